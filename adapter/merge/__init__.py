"""How KKI and SISDMK documents merge into one person, and the domain rules records are held to.

Pure functions over plain values (no database, no keys): the store's repository loads and locks
the rows, decrypts what a merge needs, and writes (encrypted) what the merge decides.
"""
