// `npm run vapid-key`: makes a P-256 key pair for Web Push (VAPID, RFC 8292) and prints the private key as the
// JWK the relay's VAPID_PRIVATE_KEY_JWK secret takes, then the public key clients subscribe with. Store it with
//   npm run -s vapid-key | head -1 | npx wrangler secret put VAPID_PRIVATE_KEY_JWK
// and set VAPID_SUBJECT (mailto: or https:) in wrangler.toml. Changing the key later invalidates every browser
// subscription made with the old one.
const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
const { kty, crv, d, x, y } = await crypto.subtle.exportKey("jwk", pair.privateKey);
const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
process.stdout.write(`${JSON.stringify({ kty, crv, d, x, y })}\n`);
process.stderr.write(`public key (applicationServerKey): ${Buffer.from(raw).toString("base64url")}\n`);
