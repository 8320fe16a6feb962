-- Migration 0002: usernames (issue #14) and username links; new tables only, so the running Worker is unaffected.

-- Usernames, on the shard the hash's first 12 bits pick (as an account id's first three hex digits pick its own).
-- The relay never sees a name: username_hash is SHA-256("cipherpost-username-v1" ‖ normalised name) in hex. The
-- primary key makes a name exact under concurrency: of two accounts reserving one hash, one statement wins.
-- state: 'reserved' (expires_at = reservation + USERNAME_RESERVATION_TTL_SECONDS), 'confirmed' (expires_at NULL),
-- or 'released' (a tombstone: account_id is the last owner, who alone may take it back before expires_at).
CREATE TABLE IF NOT EXISTS usernames (
  username_hash TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  state TEXT NOT NULL,
  expires_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usernames_expiry ON usernames (expires_at) WHERE expires_at IS NOT NULL;

-- Username links: one per account, on the account's shard. The handle begins with the account's three bucket
-- digits, so GET /v1/usernames/links/{handle} finds this shard from the handle alone; the ciphertext is the
-- username encrypted under a key only the link holds (the URL fragment, which never reaches the relay).
CREATE TABLE IF NOT EXISTS username_links (
  account_id TEXT PRIMARY KEY,
  handle TEXT NOT NULL UNIQUE,
  ciphertext TEXT NOT NULL
) WITHOUT ROWID;
