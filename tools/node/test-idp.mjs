#!/usr/bin/env node
// The test OpenID Connect provider: a real oidc-provider (panva, OpenID Certified) made to look
// like the Keycloak realm in deploy/keycloak/healthforce-realm.json, so the adapter's tests get
// real tokens over HTTP without Docker. Clients, secrets, scopes, audiences and roles all come
// from that realm export, so the two cannot drift apart.
//
//   node tools/node/test-idp.mjs --port 8090 [--host 127.0.0.1] [--realm-export FILE]
//        [--keys FILE] [--access-token-ttl SECONDS] [--print-config]
//
// Environment fallbacks: TEST_IDP_PORT, TEST_IDP_HOST, TEST_IDP_REALM_EXPORT, TEST_IDP_KEYS,
// TEST_IDP_ACCESS_TOKEN_TTL.
//
// Issuer: http://HOST:PORT/realms/<realm>; endpoints under /protocol/openid-connect/ as in
// Keycloak. Access tokens are JWTs (RS256 by default) with Keycloak's claims: typ "Bearer", azp,
// scope, realm_access.roles, resource_access.<client>.roles.
//
// Like Keycloak, a client-credentials request without `scope` gets the client's default client
// scopes, and one asking for a scope the client does not have is refused (invalid_scope).
//
// Test-only knob (Keycloak has no equivalent): the RFC 8707 `resource` parameter
//   urn:healthforce:audience:<aud>[,<aud>...][?alg=ES256][&ttl=SECONDS][&header_typ=JWT]
// chooses the token's audience(s) (e.g. only `account`), its signing algorithm, its lifetime
// and its JOSE `typ` header. Without it a client's token carries the audiences of its realm
// audience mappers.
//
// --keys FILE: a JSON Web Key Set of PRIVATE keys ({"keys": [...]}, each with kid, alg, use).
// The first RSA key signs RS256 tokens, the first P-256 key ES256 tokens. Without it an RSA and
// an EC key are generated at start. Restart with a new file (same port) to rotate keys.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_REALM_EXPORT = path.resolve(HERE, '../../deploy/keycloak/healthforce-realm.json');
const RESOURCE_PREFIX = 'urn:healthforce:audience:';
const OIDC_PATH = '/protocol/openid-connect';

function options() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: process.env.TEST_IDP_PORT },
      host: { type: 'string', default: process.env.TEST_IDP_HOST || '127.0.0.1' },
      'realm-export': { type: 'string', default: process.env.TEST_IDP_REALM_EXPORT || DEFAULT_REALM_EXPORT },
      keys: { type: 'string', default: process.env.TEST_IDP_KEYS },
      'access-token-ttl': { type: 'string', default: process.env.TEST_IDP_ACCESS_TOKEN_TTL },
      'print-config': { type: 'boolean', default: false },
    },
  });
  return values;
}

function fail(message) {
  process.stderr.write(`test-idp: ${message}\n`);
  process.exit(2);
}

// What the provider needs from the realm export: every client that can get a token by client
// credentials, with its default scopes, audiences and service-account roles.
export function realmConfig(realm) {
  const scopesByName = new Map((realm.clientScopes || []).map((s) => [s.name, s]));
  const tokenScopes = [...scopesByName.values()]
    .filter((s) => s.attributes?.['include.in.token.scope'] === 'true')
    .map((s) => s.name);
  const audiencesOf = (mappers) => (mappers || [])
    .filter((m) => m.protocolMapper === 'oidc-audience-mapper' && m.config?.['access.token.claim'] !== 'false')
    .map((m) => m.config['included.client.audience'] || m.config['included.custom.audience'])
    .filter(Boolean);
  const users = new Map((realm.users || [])
    .filter((u) => u.serviceAccountClientId)
    .map((u) => [u.serviceAccountClientId, u]));

  const clients = (realm.clients || [])
    .filter((c) => c.enabled !== false && c.serviceAccountsEnabled && !c.bearerOnly && !c.publicClient)
    .map((c) => {
      const assigned = [...(c.defaultClientScopes || []), ...(c.optionalClientScopes || [])];
      const unknown = assigned.filter((name) => !scopesByName.has(name));
      if (unknown.length) {
        throw new Error(`client ${c.clientId} names client scopes the realm does not define: ${unknown.join(', ')}`);
      }
      const defaults = c.defaultClientScopes || [];
      const audiences = [
        ...defaults.flatMap((name) => audiencesOf(scopesByName.get(name).protocolMappers)),
        ...audiencesOf(c.protocolMappers),
      ];
      const user = users.get(c.clientId) || {};
      return {
        clientId: c.clientId,
        secret: c.secret,
        scopes: assigned.filter((name) => tokenScopes.includes(name)),
        defaultScopes: defaults.filter((name) => tokenScopes.includes(name)),
        audiences: [...new Set(audiences)],
        realmRoles: user.realmRoles || [],
        clientRoles: user.clientRoles || {},
        accessTokenLifespan: Number(c.attributes?.['access.token.lifespan'] || realm.accessTokenLifespan || 300),
      };
    });
  for (const client of clients) {
    if (!client.secret) throw new Error(`client ${client.clientId} has no secret in the realm export`);
    if (!client.audiences.length) throw new Error(`client ${client.clientId} has no audience mapper`);
  }
  const audiences = [...new Set([...clients.flatMap((c) => c.audiences), 'account'])];
  return { realm: realm.realm, tokenScopes, clients, audiences };
}

function generatedKeys() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return [
    { ...rsa, kid: `rsa-${crypto.randomUUID()}`, alg: 'RS256', use: 'sig' },
    { ...ec, kid: `ec-${crypto.randomUUID()}`, alg: 'ES256', use: 'sig' },
  ];
}

function parseResource(identifier) {
  if (!identifier.startsWith(RESOURCE_PREFIX)) return undefined;
  const url = new URL(identifier);
  const audiences = url.pathname.slice(RESOURCE_PREFIX.length - 'urn:'.length).split(',').filter(Boolean);
  return {
    audiences,
    alg: url.searchParams.get('alg') || undefined,
    ttl: url.searchParams.has('ttl') ? Number(url.searchParams.get('ttl')) : undefined,
    headerTyp: url.searchParams.get('header_typ') || undefined,
  };
}

function clientFromRequest(req, params) {
  const authorization = req.headers.authorization || '';
  if (authorization.toLowerCase().startsWith('basic ')) {
    const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
    const separator = decoded.indexOf(':');
    if (separator > 0) return decodeURIComponent(decoded.slice(0, separator).replace(/\+/g, ' '));
  }
  return params.get('client_id') || undefined;
}

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function main() {
  const opts = options();
  let realm;
  try {
    realm = JSON.parse(fs.readFileSync(opts['realm-export'], 'utf8'));
  } catch (error) {
    fail(`cannot read the realm export ${opts['realm-export']}: ${error.message}`);
  }
  const config = realmConfig(realm);
  if (opts['print-config']) {
    process.stdout.write(`${JSON.stringify(config, null, 2)}\n`);
    return;
  }
  const port = Number(opts.port);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) fail('give --port (or TEST_IDP_PORT)');
  const ttlOverride = opts['access-token-ttl'] ? Number(opts['access-token-ttl']) : undefined;

  let keys;
  if (opts.keys) {
    try {
      keys = JSON.parse(fs.readFileSync(opts.keys, 'utf8')).keys;
    } catch (error) {
      fail(`cannot read the key set ${opts.keys}: ${error.message}`);
    }
  } else {
    keys = generatedKeys();
  }

  const prefix = `/realms/${config.realm}`;
  const issuer = `http://${opts.host}:${port}${prefix}`;
  const clientsById = new Map(config.clients.map((c) => [c.clientId, c]));
  const allScopes = config.tokenScopes.join(' ');

  const provider = new Provider(issuer, {
    clients: config.clients.map((c) => ({
      client_id: c.clientId,
      client_secret: c.secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      // An empty allow-list would mean "any scope": a client without scopes may ask only openid.
      scope: c.scopes.join(' ') || 'openid',
    })),
    jwks: { keys },
    scopes: ['openid', ...config.tokenScopes],
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Keycloak puts the audiences of the client's audience mappers in `aud`.
        defaultResource: (ctx, client) => `${RESOURCE_PREFIX}${clientsById.get(client.clientId).audiences.join(',')}`,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, identifier, client) => {
          const resource = parseResource(identifier);
          if (!resource || !resource.audiences.every((aud) => config.audiences.includes(aud))) {
            throw new Provider.errors.InvalidTarget(`unknown resource; audiences are ${config.audiences.join(', ')}`);
          }
          const lifespan = clientsById.get(client.clientId)?.accessTokenLifespan || 300;
          return {
            audience: resource.audiences[0],
            scope: allScopes,
            accessTokenFormat: 'jwt',
            accessTokenTTL: resource.ttl || ttlOverride || lifespan,
            jwt: { sign: { alg: resource.alg || 'RS256' } },
          };
        },
      },
    },
    extraTokenClaims: (ctx, token) => {
      const client = clientsById.get(token.clientId);
      if (!client) return undefined;
      const resourceAccess = Object.fromEntries(
        Object.entries(client.clientRoles).map(([name, roles]) => [name, { roles }]),
      );
      return {
        typ: 'Bearer',
        azp: client.clientId,
        ...(client.realmRoles.length ? { realm_access: { roles: client.realmRoles } } : {}),
        ...(Object.keys(resourceAccess).length ? { resource_access: resourceAccess } : {}),
      };
    },
    formats: {
      customizers: {
        jwt: (ctx, token, jwt) => {
          const resource = parseResource(token.resourceServer?.identifier() || '');
          if (resource && resource.audiences.length > 1) jwt.payload.aud = resource.audiences;
          if (resource?.headerTyp) jwt.header = { ...jwt.header, typ: resource.headerTyp };
        },
      },
    },
    ttl: {
      ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || ttlOverride || 300,
    },
    routes: {
      authorization: `${OIDC_PATH}/auth`,
      token: `${OIDC_PATH}/token`,
      jwks: `${OIDC_PATH}/certs`,
      userinfo: `${OIDC_PATH}/userinfo`,
      introspection: `${OIDC_PATH}/token/introspect`,
      revocation: `${OIDC_PATH}/revoke`,
      end_session: `${OIDC_PATH}/logout`,
    },
  });

  const callback = provider.callback();
  const server = http.createServer(async (req, res) => {
    const url = req.url || '/';
    if (url !== prefix && !url.startsWith(`${prefix}/`) && !url.startsWith(`${prefix}?`)) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'not_found', error_description: `this provider serves ${prefix}` }));
      return;
    }
    req.originalUrl = url;
    req.url = url.slice(prefix.length) || '/';
    if (req.method === 'POST' && req.url === `${OIDC_PATH}/token`
        && (req.headers['content-type'] || '').startsWith('application/x-www-form-urlencoded')) {
      // Keycloak grants a client's default client scopes when the request names none.
      try {
        const params = new URLSearchParams(await readBody(req));
        const client = clientsById.get(clientFromRequest(req, params));
        if (params.get('grant_type') === 'client_credentials' && !params.has('scope') && client?.defaultScopes.length) {
          params.set('scope', client.defaultScopes.join(' '));
        }
        req.body = params.toString();
      } catch (error) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'invalid_request', error_description: error.message }));
        return;
      }
    }
    callback(req, res);
  });
  server.listen(port, opts.host, () => {
    process.stdout.write(`test-idp: issuer ${issuer} (keys: ${keys.map((k) => `${k.kid}/${k.alg}`).join(', ')})\n`);
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
