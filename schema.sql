-- cipherpost's D1 schema as it stands, on every shard: the file to read. Databases get it from migrations/
-- (wrangler d1 migrations apply; docs/scaling.md), never from this file; test/migrations.test.ts checks that the
-- migrations applied in order give exactly these tables and indexes. Change both together.
-- Bytes are stored as the standard base64 text they travel in, so a bundle is served without re-encoding.
-- Devices are keyed by device_uid, a random id the account's Durable Object gives each device when it is
-- created: a removed device's rows can never be mistaken for those of a later device with the same id.

CREATE TABLE IF NOT EXISTS accounts (
  account_id TEXT PRIMARY KEY,
  identity_key TEXT NOT NULL,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS devices (
  account_id TEXT NOT NULL,
  device_id INTEGER NOT NULL,
  device_uid INTEGER NOT NULL,
  registration_id INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (account_id, device_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS signed_prekeys (
  account_id TEXT NOT NULL,
  device_uid INTEGER NOT NULL,
  key_id INTEGER NOT NULL,
  public_key TEXT NOT NULL,
  signature TEXT NOT NULL,
  PRIMARY KEY (account_id, device_uid)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS kem_last_resort_keys (
  account_id TEXT NOT NULL,
  device_uid INTEGER NOT NULL,
  key_id INTEGER NOT NULL,
  public_key TEXT NOT NULL,
  signature TEXT NOT NULL,
  PRIMARY KEY (account_id, device_uid)
) WITHOUT ROWID;

-- One-time EC prekeys, keyed by id so a re-sent id is ignored; seq (upload time in ms * 1024 + position in the
-- upload) orders them so claims take the oldest first. WITHOUT ROWID: two b-trees per key, not three.
CREATE TABLE IF NOT EXISTS ec_prekeys (
  account_id TEXT NOT NULL,
  device_uid INTEGER NOT NULL,
  key_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  public_key TEXT NOT NULL,
  PRIMARY KEY (account_id, device_uid, key_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ec_prekeys_claim ON ec_prekeys (account_id, device_uid, seq);

-- One-time KEM prekeys live in immutable R2 pages (about 1.6 KB a key); D1 keeps each page's claim cursor.
-- A page is claimable once ready = 1 (its R2 object is written).
CREATE TABLE IF NOT EXISTS kem_prekey_pages (
  seq INTEGER PRIMARY KEY,
  page_id TEXT NOT NULL UNIQUE,
  account_id TEXT NOT NULL,
  device_uid INTEGER NOT NULL,
  key_count INTEGER NOT NULL,
  next_index INTEGER NOT NULL DEFAULT 0,
  ready INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS kem_prekey_pages_claim ON kem_prekey_pages (account_id, device_uid, ready, seq);

-- The KEM key ids a device has in pages, so a re-sent id is ignored rather than stored twice. A page's ids
-- are found through the primary key's (account_id, device_uid) prefix: a device has a few hundred at most.
CREATE TABLE IF NOT EXISTS kem_prekey_ids (
  account_id TEXT NOT NULL,
  device_uid INTEGER NOT NULL,
  key_id INTEGER NOT NULL,
  page_seq INTEGER NOT NULL,
  PRIMARY KEY (account_id, device_uid, key_id)
) WITHOUT ROWID;

-- Proof-of-work challenges, on the shard their first 12 bits pick; deleted when used, swept when expired.
CREATE TABLE IF NOT EXISTS pow_challenges (
  challenge TEXT PRIMARY KEY,
  difficulty INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pow_challenges_expiry ON pow_challenges (expires_at);

-- Attachments: each account's index of its tus uploads and stored attachments, on the account's shard. R2
-- cannot list unfinished multipart uploads and cron cannot list Durable Objects, so this index is what the
-- quotas, the expiry sweep and account deletion read. state: 'uploading' (size = Upload-Length reserved,
-- expires_at = the upload's deadline) or 'stored' (expires_at = completion + ATTACHMENT_TTL_SECONDS).
CREATE TABLE IF NOT EXISTS attachments (
  id TEXT PRIMARY KEY,
  account_id TEXT NOT NULL,
  device_uid INTEGER NOT NULL,
  size INTEGER NOT NULL,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attachments_account ON attachments (account_id, state);
CREATE INDEX IF NOT EXISTS attachments_expiry ON attachments (expires_at);

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
