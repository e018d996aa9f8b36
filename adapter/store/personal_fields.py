"""The names of personal fields, written once: the store encrypts them, the audit trail names
them, the log redaction blanks them. A new personal field is added here and nowhere else."""

from __future__ import annotations

from typing import Final

# Who the person is: what a worker summary shows (masked without the PII scope), and what KKI's
# registration holds of its holder.
PERSON_IDENTITY_FIELDS: Final = ("nik", "full_name", "gelar_depan", "gelar_belakang", "birth_date")
# A health worker's personal columns (SISDMK's document names them the same).
WORKER_PERSONAL_FIELDS: Final = (
    *PERSON_IDENTITY_FIELDS,
    "birth_place",
    "address",
    "phone",
    "email",
    "ihs_number",
    "nip",
)
# A KKI registration's personal fields.
REGISTRATION_PERSONAL_FIELDS: Final = PERSON_IDENTITY_FIELDS
# Personal data under other names: the sources' display name (with titles), the API's
# look-up answer's holder name, an education's diploma number.
OTHER_PERSONAL_FIELDS: Final = ("display_name", "holder_name", "ijazah_no")
# What one SISDMK record writes, as its audit entry names it: the worker's personal columns
# (its employments' NIPs among them) and its educations' diploma numbers.
SISDMK_RECORD_PERSONAL_FIELDS: Final = (*WORKER_PERSONAL_FIELDS, "ijazah_no")
# Every name personal data goes by; the log redaction covers all of them.
PERSONAL_FIELDS: Final = frozenset(
    (*WORKER_PERSONAL_FIELDS, *REGISTRATION_PERSONAL_FIELDS, *OTHER_PERSONAL_FIELDS)
)
