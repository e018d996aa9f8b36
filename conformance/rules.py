"""The rule catalogue: every rule a run can report, what it means and where it comes from.

Rule ids are stable (baselines and CI dashboards refer to them); docs/conformance.md lists them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    source: str


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {rule.id: rule for rule in rules}


CONTRACT_PREFIX: Final = "contract/"

RULES: Final[dict[str, Rule]] = _rules(
    # Schemathesis checks, one rule per check.
    Rule(
        "contract/not_a_server_error",
        "No request, however odd, is answered with a 5xx",
        "contract: documented responses; RFC 9110 §15.6",
    ),
    Rule(
        "contract/status_code_conformance",
        "Every status code answered is documented for the operation",
        "contract: `responses` of the operation",
    ),
    Rule(
        "contract/content_type_conformance",
        "The Content-Type is one the contract documents for that status",
        "contract: response `content`",
    ),
    Rule(
        "contract/response_headers_conformance",
        "Documented response headers are present and valid",
        "contract: response `headers`",
    ),
    Rule(
        "contract/response_schema_conformance",
        "The response body validates against the documented schema",
        "contract: response schema (OpenAPI 3.0.3)",
    ),
    Rule(
        "contract/negative_data_rejection",
        "A request the contract forbids is refused with a 4xx",
        "contract: parameter and body schemas",
    ),
    Rule(
        "contract/positive_data_acceptance",
        "A request the contract allows is accepted",
        "contract: parameter and body schemas",
    ),
    Rule(
        "contract/missing_required_header",
        "A request without a required header is refused",
        "contract: required header parameters",
    ),
    Rule(
        "contract/unsupported_method",
        "A method the path does not document is answered 405",
        "RFC 9110 §15.5.6",
    ),
    Rule(
        "contract/ignored_auth",
        "An operation with security refuses requests without valid credentials",
        "contract: `security`",
    ),
    Rule(
        "contract/use_after_free",
        "A deleted resource is not found afterwards",
        "contract: links between operations",
    ),
    Rule(
        "contract/ensure_resource_availability",
        "A created resource can be read afterwards",
        "contract: links between operations",
    ),
    Rule(
        "contract/allow_header_conformance",
        "A 405 answer carries an Allow header listing the documented methods",
        "RFC 9110 §15.5.6 and §10.2.1",
    ),
    Rule(
        "contract/object_level_authorization",
        "One client cannot read another's resources by changing an id",
        "OWASP API1:2023 (broken object level authorization); contract `security`",
    ),
    Rule(
        "contract/run-error",
        "Schemathesis could test the operation at all",
        "contract: the operation must be testable from its documented schema",
    ),
    # Protocol.
    Rule(
        "auth/missing-credentials",
        "Every secured operation answers 401 when no credentials are sent",
        "contract `security`; RFC 9110 §11.6.1, §15.5.2",
    ),
    Rule(
        "auth/wrong-credentials",
        "Every secured operation answers 401 to credentials it did not issue",
        "contract `security`; RFC 6750 §3.1 (bearer), RFC 9110 §15.5.2",
    ),
    Rule(
        "errors/error-body",
        "Error responses have the documented content type and body schema",
        "contract error responses (KKI: RFC 9457 problem+json; SISDMK: envelope, OperationOutcome)",
    ),
    Rule(
        "errors/status",
        "A provoked error gets the status the contract documents for it: 404 for a record that "
        "does not exist, 400 for a cursor the server did not issue, 422 for an impossible NIK",
        "contract: the operation's description and `responses`",
    ),
    Rule(
        "pagination/repeated-record",
        "No record appears twice while paging through a list",
        "contract: Page (cursor paging in (updated_at, key) order)",
    ),
    Rule(
        "pagination/lost-record",
        "Paging with a small limit returns the same records as paging with the largest",
        "contract: Page",
    ),
    Rule(
        "pagination/cursor-loop",
        "A cursor is never handed out twice (paging always ends)",
        "contract: Page.next_cursor",
    ),
    Rule(
        "pagination/has-more",
        "`has_more` is true exactly when `next_cursor` is not null",
        "contract: Page.has_more",
    ),
    Rule(
        "pagination/page-answered",
        "Every page of a list asked for with the provider's own cursor and documented "
        "parameters is answered 200",
        "contract: the list operation's `cursor`, `limit` and filters",
    ),
    Rule(
        "pagination/updated-since",
        "`updated_since` returns exactly the records changed strictly after it",
        "contract: `updated_since` parameter",
    ),
    Rule(
        "rate-limit/retry-after",
        "Every 429 carries a valid Retry-After (delay-seconds or HTTP-date)",
        "RFC 6585 §4; RFC 9110 §10.2.3; contract TooManyRequests",
    ),
    Rule(
        "token/client-credentials",
        "The token endpoint takes a form body with `grant_type` in the query and answers "
        "the documented token document",
        "SATUSEHAT auth (POST /oauth2/v1/accesstoken?grant_type=client_credentials); contract",
    ),
    Rule(
        "token/lifetime",
        "`expires_in` is a whole number of seconds, at least 60, and the token works",
        'SATUSEHAT auth (expires_in "14399"); contract AccessToken',
    ),
    Rule(
        "token/wrong-secret",
        "A wrong client secret is refused with 401 and an OperationOutcome",
        "SATUSEHAT auth; contract TokenUnauthorized",
    ),
    Rule(
        "token/grant-type",
        "A token request without `grant_type=client_credentials` in the query is refused",
        "SATUSEHAT auth; contract issueAccessToken",
    ),
    Rule(
        "webhooks/signature",
        "Every delivery carries a Standard Webhooks v1 signature of id.timestamp.body under the "
        "subscription's secret",
        "Standard Webhooks (webhook-signature); contract webhook section",
    ),
    Rule(
        "webhooks/timestamp",
        "webhook-timestamp is the delivery time in Unix seconds, within 5 minutes",
        "Standard Webhooks (replay protection, 5 min tolerance)",
    ),
    Rule(
        "webhooks/unique-id",
        "A webhook-id is never used for two different events",
        "Standard Webhooks (webhook-id identifies the message)",
    ),
    Rule(
        "webhooks/stable-id",
        "Redeliveries of an event keep its webhook-id (so receivers can drop duplicates)",
        "Standard Webhooks (idempotency key)",
    ),
    Rule(
        "webhooks/retry",
        "An event answered 5xx is retried with growing delays until accepted; every event "
        "caused is delivered",
        "Standard Webhooks (retries with exponential backoff); contract: at-least-once",
    ),
    Rule(
        "webhooks/payload",
        "Every event body validates against the contract's WebhookEvent",
        "contract WebhookEvent",
    ),
    Rule(
        "pact/interaction",
        "Every interaction of the adapter's pact with this system verifies against the target "
        "(the operation column names the interaction)",
        "contracts/pacts/ (the adapter's consumer tests)",
    ),
    # Domain.
    Rule(
        "domain/nik-structure",
        "A NIK is PP KK CC DDMMYY SSSS with an existing province, a possible date, serial ≥ 1",
        "Permendagri on NIK (Dukcapil); indonesian_ids.nik",
    ),
    Rule(
        "domain/nik-birth-date",
        "The birth date encoded in the NIK is the record's birth date",
        "NIK layout (DDMMYY); Dukcapil is authoritative for identity",
    ),
    Rule(
        "domain/nik-sex",
        "The NIK's day field (+40 for women) agrees with the record's gender",
        "NIK layout (DD + 40 for women)",
    ),
    Rule(
        "domain/nip-structure",
        "A NIP is YYYYMMDD YYYYMM G SSS (PNS) or YYYYMMDD YYYY 21 G SSS (PPPK)",
        "PP 11/2017 NIP layout; BKN NI PPPK; indonesian_ids.nip",
    ),
    Rule(
        "domain/nip-agreement",
        "The NIP's birth date and gender digit agree with the record",
        "NIP layout",
    ),
    Rule(
        "domain/str-format",
        "An STR number has a known shape: two letters + 14 digits (new) or 16 digits (old KKI)",
        "SATUSEHAT SDMK STR numbers; KKI doctor STRs",
    ),
    Rule(
        "domain/str-citizen-lifetime",
        "A citizen's (WNI) STR issued under UU 17/2023 has no end date; an older one at most "
        "five years",
        "UU 17/2023 Pasal 260(4) (STR for life); Pasal 449 (old STRs keep their dates)",
    ),
    Rule(
        "domain/str-foreigner-term",
        "A foreign national's (WNA) STR has an end date at most two years plus one two-year "
        "extension after issue",
        "UU 17/2023 (STR for WNA is temporary: 2 years, extendable once)",
    ),
    Rule(
        "domain/sip-five-years",
        "A SIP ends at most five years after it was issued",
        "UU 17/2023 and PP 28/2024: SIP valid for five years",
    ),
    Rule(
        "domain/skp-deactivation",
        "An STR deactivated for missing SKP shows the same status and reason on every endpoint, "
        "SKP not adequate and no SIP in force",
        "SE HK.02.01/MENKES/1063/2024; contract CertificationStatus",
    ),
    Rule(
        "domain/peer-identity",
        "The same NIK has the same name and birth date at KKI and SISDMK",
        "UU 27/2022 Pasal 16 (accurate personal data); Dukcapil identity is authoritative",
    ),
    # SSO realm (sso): what the adapter needs of it.
    Rule(
        "sso/discovery-document",
        "The discovery document is a JSON object with the metadata OpenID Connect requires, "
        "offers client_credentials and client_secret_basic when it lists grants and methods, "
        "and the adapter accepts it",
        "OpenID Connect Discovery 1.0 §3; RFC 8414 §2; adapter/auth/discovery.py",
    ),
    Rule(
        "sso/discovery-issuer",
        "`issuer` equals the URL the document was fetched for, character for character",
        "OpenID Connect Discovery 1.0 §4.3; RFC 8414 §3.3",
    ),
    Rule(
        "sso/https",
        "issuer, jwks_uri and token_endpoint use https (http only on loopback or --allow-http)",
        "OpenID Connect Discovery 1.0 §3; RFC 6749 §3.2, §10.9",
    ),
    Rule(
        "sso/jwks-asymmetric",
        "The JWKS publishes only asymmetric (RSA, EC) keys, never a symmetric one",
        "RFC 7517 §4.1; RFC 8725 §3.1",
    ),
    Rule(
        "sso/jwks-no-private",
        "No key of the JWKS carries private parts (d, p, q, dp, dq, qi, oth, k)",
        "RFC 7517 §4, RFC 7518 §6.2.2, §6.3.2, §6.4.1",
    ),
    Rule(
        "sso/jwks-unique-kid",
        "Every key of the JWKS has a kid and no two keys share one",
        "RFC 7517 §4.5; RFC 7515 §4.1.4; adapter/auth/jwks.py",
    ),
    Rule(
        "sso/jwks-usable-key",
        "The JWKS holds a signing key the adapter uses (RS256 or ES256, use sig)",
        "RFC 8725 §3.1; adapter/auth/jwks.py ALLOWED_ALGORITHMS",
    ),
    Rule(
        "sso/client-credentials",
        "A client of the adapter gets a Bearer access token by client credentials "
        "(client_secret_basic)",
        "RFC 6749 §4.4, §2.3.1, §5.1; adapter/auth/client_credentials.py",
    ),
    Rule(
        "sso/wrong-secret",
        "A wrong client secret is refused with 400 or 401 and no token",
        "RFC 6749 §5.2",
    ),
    Rule(
        "sso/token-audience",
        "The access token's `aud` contains the adapter's audience (--audience, hf-adapter)",
        "RFC 9068 §3, RFC 7519 §4.1.3; docs/auth.md (OIDC_AUDIENCE)",
    ),
    Rule(
        "sso/token-scopes",
        "The access token's `scope` is a space-separated string holding the scopes the client "
        "needs (--expect-scopes; otherwise at least one of the adapter's)",
        "RFC 9068 §2.2.3, RFC 8693 §4.2; adapter/auth/scopes.py; contracts/openapi/adapter.yaml",
    ),
    Rule(
        "sso/token-type",
        "The access token is marked as one (claim typ Bearer, or JOSE typ at+jwt): not an ID token",
        "RFC 9068 §2.1, §4; RFC 8725 §3.11; adapter/auth/tokens.py",
    ),
    Rule(
        "sso/token-algorithm",
        "The access token is signed with RS256 or ES256 by a key the JWKS publishes (its kid)",
        "RFC 8725 §3.1; RFC 9068 §2.1; adapter/auth/jwks.py ALLOWED_ALGORITHMS",
    ),
    Rule(
        "sso/token-lifetime",
        "exp and iat are present and the token lives at most --max-token-lifetime (3600 s), "
        "as `expires_in` says",
        "RFC 9068 §2.2; RFC 6749 §5.1; RFC 6819 §5.1.5.3",
    ),
    Rule(
        "sso/token-validates",
        "The adapter's own validator (adapter/auth/tokens.py TokenValidator) accepts the token",
        "RFC 9068 §4; RFC 8725; adapter/auth/tokens.py",
    ),
    # The adapter's API (adapter).
    Rule(
        "scopes/wrong-scope",
        "A token without the operation's scope is refused with 403 and a Bearer challenge "
        'error="insufficient_scope"',
        "contracts/openapi/adapter.yaml `security`; RFC 6750 §3.1",
    ),
    Rule(
        "scopes/right-scope",
        "A token with the operation's scope is let through: 2xx (a documented 404 or 409 for "
        "an id that does not exist or a state that conflicts)",
        "contracts/openapi/adapter.yaml `security`; deploy/keycloak/healthforce-realm.json",
    ),
)


def rule_title(rule_id: str) -> str:
    rule = RULES.get(rule_id)
    return rule.title if rule is not None else rule_id
