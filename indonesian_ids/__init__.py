"""Indonesian identifier rules (NIK, NIP/NI PPPK, STR) and Kemendagri region codes.

Pure functions with no I/O: the mocks use them to generate data, the adapter to validate it.
"""
