-- 0002: exactly-once settlement against the auditor's on-chain payout record, and idempotent
-- intake.
--
-- A settlement batch consumes one number of the auditor's payout sequence (`seq`) and keeps the
-- transaction it signed (`signature`, `signed_tx`), so that after a crash the same bytes can be
-- sent again or, once they can no longer land, the same batch re-signed.
ALTER TABLE settlements ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE settlements ADD COLUMN signature TEXT;
ALTER TABLE settlements ADD COLUMN signed_tx BLOB;
CREATE INDEX settlements_open ON settlements (seq) WHERE status = 0;

-- The SHA-256 of the bytes a transaction was submitted with: the same id with the same bytes
-- gets the stored answer back; NULL for rows written before this migration.
ALTER TABLE transactions ADD COLUMN submission BLOB;
