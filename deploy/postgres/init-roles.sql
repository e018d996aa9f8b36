-- docker-compose.test.yml: the two roles of docs/operations.md#database-roles and the adapter's
-- database, made once when the PostgreSQL container first starts. TEST PASSWORDS ONLY: a real
-- deployment creates its roles with its own passwords from its secret store.
CREATE ROLE hf_adapter_owner LOGIN PASSWORD 'owner-test-only';
CREATE ROLE hf_adapter_app LOGIN PASSWORD 'app-test-only';
CREATE DATABASE healthforce OWNER hf_adapter_owner;
