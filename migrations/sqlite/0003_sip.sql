-- SIP credentials of users (agents' phones). Keep in step with the PostgreSQL file.
-- `sip_username` is the user part of the phone's address-of-record and its digest username;
-- it is unique across all tenants, because a REGISTER names no tenant (docs/decisions.md).
-- `sip_ha1` holds the digest HA1 values `<MD5 hex>:<SHA-256 hex>` computed with the configured
-- realm; the plain password is never stored.

ALTER TABLE users ADD COLUMN sip_username TEXT;
ALTER TABLE users ADD COLUMN sip_ha1 TEXT;
CREATE UNIQUE INDEX users_sip_username ON users (sip_username);
