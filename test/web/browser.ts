// What every browser test needs: the web app built once per file, a relay of its own serving it, and Chromium
// from npm (@sparticuz/chromium) driven by playwright-core, with helpers that act as a person would.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import sparticuz from "@sparticuz/chromium";
import { build } from "esbuild";
import { type Browser, type BrowserContext, chromium, type Locator, type Page } from "playwright-core";
import { buildWeb } from "../../scripts/build-web.mjs";
import { type Relay, type StartRelayOptions, startRelay } from "../support/relay.ts";

export interface WebEnv {
  relay: Relay;
  browser: Browser;
  stop(): Promise<void>;
}

/** Builds the app, starts a relay (serving it from dist/web) and a headless Chromium. */
export async function startWebEnv(options: StartRelayOptions = {}): Promise<WebEnv> {
  await buildWeb({ log: () => {} });
  const [relay, browser] = await Promise.all([
    startRelay(options),
    chromium.launch({
      executablePath: await sparticuz.executablePath(),
      // Not sparticuz.args: its --single-process would make every context share one IndexedDB (TOOLCHAIN.md).
      args: ["--no-sandbox", "--no-zygote", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"],
      headless: true,
    }),
  ]);
  return {
    relay,
    browser,
    async stop() {
      await browser.close().catch(() => undefined);
      await relay.stop();
    },
  };
}

export interface Person {
  context: BrowserContext;
  page: Page;
  name: string;
  accountId: string;
  invite: string;
}

export interface PersonOptions {
  recordStatus?: boolean;
  /** Every RTCPeerConnection of the page uses TURN relays only and is kept in window.__pcs (call tests). */
  relayOnlyCalls?: boolean;
  /** The page's clock is Playwright's (context.clock), so a test can fast-forward it. */
  fakeClock?: boolean;
}

/**
 * Runs in the page: RTCPeerConnection forced to `iceTransportPolicy: "relay"`, so a call's media provably goes
 * through the TURN server with the relay's credentials; each connection kept in window.__pcs for its stats.
 */
function relayOnlyCalls() {
  const Native = window.RTCPeerConnection;
  const w = window as unknown as { __pcs: RTCPeerConnection[] };
  w.__pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(config?: RTCConfiguration) {
      super({ ...config, iceTransportPolicy: "relay" });
      w.__pcs.push(this);
    }
  };
}

/** A new browser profile that opens the app, creates an account and closes the welcome dialog. */
export async function createPerson(
  env: WebEnv,
  name: string,
  viewport = { width: 1100, height: 760 },
  options: PersonOptions = {},
): Promise<Person> {
  const context = await env.browser.newContext({
    viewport,
    ...(options.relayOnlyCalls ? { permissions: ["camera", "microphone"] } : {}),
  });
  if (options.recordStatus) await context.addInitScript(recordTransients);
  if (options.relayOnlyCalls) await context.addInitScript(relayOnlyCalls);
  if (options.fakeClock) await context.clock.install();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error:`, e));
  await page.goto(`${env.relay.url}/`);
  await page.getByRole("textbox", { name: "Display name" }).fill(name);
  await page.getByRole("button", { name: "Create account" }).click();
  const invite = (await page.getByLabel("Invite link", { exact: true }).textContent()) ?? "";
  const accountId = (await page.getByLabel("Account ID", { exact: true }).textContent()) ?? "";
  await page.getByRole("button", { name: "Close" }).click();
  return { context, page, name, accountId, invite };
}

/**
 * Runs in the page: keeps every text a status region shows (window.__statuses) and every value a progress bar
 * takes (window.__progress, "label value/max"), since phases can pass faster than a test polls.
 */
function recordTransients() {
  const w = window as unknown as { __statuses: string[]; __progress: string[] };
  w.__statuses = [];
  w.__progress = [];
  new MutationObserver(() => {
    for (const el of document.querySelectorAll('[role="status"]')) {
      const t = el.textContent ?? "";
      if (t && w.__statuses.at(-1) !== t) w.__statuses.push(t);
    }
    for (const el of document.querySelectorAll("progress")) {
      const p = `${el.getAttribute("aria-label")} ${el.getAttribute("value")}/${el.getAttribute("max")}`;
      if (w.__progress.at(-1) !== p) w.__progress.push(p);
    }
  }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
}

export function recorded(page: Page, what: "__statuses" | "__progress"): Promise<string[]> {
  return page.evaluate((key) => (window as unknown as Record<string, string[]>)[key] ?? [], what);
}

/** Chooses a file through the "Attach file" button, as a person does. */
export async function attachFile(page: Page, path: string): Promise<void> {
  const [chooser] = await Promise.all([
    page.waitForEvent("filechooser"),
    page.getByRole("button", { name: "Attach file" }).click(),
  ]);
  await chooser.setFiles(path);
}

/** Opens "New chat", enters an invite link or account id, and starts the chat. */
export async function startChat(page: Page, inviteOrId: string): Promise<void> {
  await page.getByRole("button", { name: "New chat" }).click();
  await page.getByRole("textbox", { name: "Invite link or account ID" }).fill(inviteOrId);
  await page.getByRole("button", { name: "Start chat" }).click();
}

/** Opens the conversation whose button name starts with `name`. */
export async function openChat(page: Page, name: string): Promise<void> {
  await page
    .getByRole("list", { name: "Conversations" })
    .getByRole("button", { name: new RegExp(`^${name}`) })
    .click();
}

export async function sendText(page: Page, text: string): Promise<void> {
  // A conversation that is still opening (a group just created, say) replaces the composer and drops what was
  // typed into the old one: type again rather than wait for a Send button that stays disabled. A click that
  // went through but reported an error (its element was replaced as it sent) must not send twice: the message
  // showing up in the conversation is the proof.
  const box = page.getByRole("textbox", { name: "Message" });
  const send = page.getByRole("button", { name: "Send" });
  const sent = page.getByRole("region", { name: "Messages" }).getByRole("listitem").filter({ hasText: text });
  const before = await sent.count();
  for (let attempt = 1; ; attempt++) {
    await box.fill(text);
    try {
      await send.click({ timeout: 5_000 });
      return;
    } catch (e) {
      // Give a click that did go through a moment to show its message before typing again.
      for (let i = 0; i < 20; i++) {
        if ((await sent.count()) > before) return;
        await page.waitForTimeout(100);
      }
      if (attempt >= 3) throw e;
    }
  }
}

export function messages(page: Page) {
  return page.getByRole("region", { name: "Messages" }).getByRole("listitem");
}

/** Waits until `locator` has an element whose text contains `text` (playwright-core has no `expect`). */
export async function waitForText(locator: Locator, text: string | RegExp, timeout = 15_000): Promise<void> {
  await locator.filter({ hasText: text }).first().waitFor({ timeout });
}

let bundled: Promise<string> | undefined;

/**
 * The app's store module (`src/web/storage/opfs-storage.ts`, and the earlier IndexedDB-record store), bundled as
 * the app bundles it; `page.evaluate(await storeBundle())` defines `stores` in the page (type: `PageStores`).
 */
export function storeBundle(): Promise<string> {
  bundled ??= build({
    stdin: {
      contents: `export * from "./src/web/storage/opfs-storage.ts"; export { EncryptedIdbStorage } from "./src/web/storage/idb-storage.ts";`,
      resolveDir: process.cwd(),
      loader: "ts",
    },
    bundle: true,
    format: "iife",
    globalName: "stores",
    write: false,
    target: "es2022",
  }).then((out) => out.outputFiles[0]!.text);
  return bundled;
}

export type PageStores = typeof import("../../src/web/storage/opfs-storage.ts") &
  Pick<typeof import("../../src/web/storage/idb-storage.ts"), "EncryptedIdbStorage">;

/** Runs `read` in the page, again when the app replaced a file while it was reading (NotFoundError). */
async function settled<T>(page: Page, read: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await page.evaluate(read);
    } catch (e) {
      // NotFoundError: a file was removed after its name was listed; NotReadableError: replaced after it was opened.
      if (attempt >= 20 || !/NotFoundError|NotReadableError/.test(String(e))) throw e;
      await page.waitForTimeout(50);
    }
  }
}

/**
 * The app's store files as they are now (src/web/storage/opfs-storage.ts): each file of the origin-private file
 * system's "cipherpost" folder, base64, by name. What a copy of the profile folder holds, sealed.
 */
export async function storeFiles(page: Page): Promise<Record<string, string>> {
  return settled(page, async () => {
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("cipherpost");
    const out: Record<string, string> = {};
    for await (const [name, handle] of dir.entries()) {
      if (handle.kind !== "file") continue;
      const bytes = new Uint8Array(await (await (handle as FileSystemFileHandle).getFile()).arrayBuffer());
      let bin = "";
      for (const b of bytes) bin += String.fromCharCode(b);
      out[name] = btoa(bin);
    }
    return out;
  });
}

/**
 * Every private value of the device, read as an attacker holding the profile and able to use its key would: the
 * manifest and each shard file it names opened with the non-extractable key, in the page. The format is written out
 * here on purpose (MAGIC "CPWB1" ‖ 12-byte IV ‖ AES-256-GCM, bound to "cipherpost-storage NAME"), so a change to it
 * shows up here.
 */
export async function decryptedEntries(page: Page): Promise<[string, string][]> {
  return settled(page, async () => {
    const req = <T>(r: IDBRequest<T>) =>
      new Promise<T>((ok, fail) => {
        r.onsuccess = () => ok(r.result);
        r.onerror = () => fail(r.error);
      });
    const db = await req(indexedDB.open("cipherpost"));
    const keys = await req(db.transaction("keys").objectStore("keys").get("v1"));
    db.close();
    const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle("cipherpost");
    const open = async (name: string) => {
      const bytes = new Uint8Array(await (await (await dir.getFileHandle(name)).getFile()).arrayBuffer());
      if (new TextDecoder().decode(bytes.subarray(0, 5)) !== "CPWB1") throw new Error(`${name} is not a store file`);
      const plain = await crypto.subtle.decrypt(
        {
          name: "AES-GCM",
          iv: bytes.subarray(5, 17),
          additionalData: new TextEncoder().encode(`cipherpost-storage ${name}`),
        },
        keys.aes,
        bytes.subarray(17),
      );
      return JSON.parse(new TextDecoder().decode(plain));
    };
    const manifest = (await open("manifest")) as { shards: Record<string, number> };
    const out: [string, string][] = [];
    for (const [shard, generation] of Object.entries(manifest.shards))
      out.push(...((await open(`${shard}.${generation}`)) as [string, string][]));
    return out;
  });
}

/**
 * Alice and Bob, each in a browser context, in one conversation: Bob opens Alice's invite link and says `first`,
 * and Alice opens the chat and sees it. The opening of most browser tests.
 */
export async function twoPeopleChatting(
  env: WebEnv,
  first: string,
  options: PersonOptions = {},
): Promise<{ alice: Person; bob: Person }> {
  const alice = await createPerson(env, "Alice", undefined, options);
  const bob = await createPerson(env, "Bob", undefined, options);
  await startChat(bob.page, alice.invite);
  await sendText(bob.page, first);
  await openChat(alice.page, "Bob");
  await waitForText(messages(alice.page), first);
  return { alice, bob };
}

/**
 * A new browser linked to `owner`'s account the way a person links one: "Devices", "Link a device", the code typed
 * in the new browser, the verification codes compared, "Approve". Answers the new browser's page, dialogs closed.
 */
export async function linkNewBrowser(env: WebEnv, owner: Person, options: PersonOptions = {}): Promise<Person> {
  await owner.page.getByRole("button", { name: "Devices" }).click();
  await owner.page.getByRole("button", { name: "Link a device" }).click();
  const code = (await owner.page.getByLabel("Link code value", { exact: true }).textContent()) ?? "";
  const context = await env.browser.newContext({
    viewport: { width: 1000, height: 700 },
    ...(options.relayOnlyCalls ? { permissions: ["camera", "microphone"] } : {}),
  });
  if (options.relayOnlyCalls) await context.addInitScript(relayOnlyCalls);
  const page = await context.newPage();
  await page.goto(`${env.relay.url}/`);
  await page.getByRole("button", { name: "Link to an existing account" }).click();
  await page.getByRole("textbox", { name: "Link code" }).fill(code);
  await page.getByRole("button", { name: "Link this device" }).click();
  await waitForText(page.getByLabel("Verification code", { exact: true }), /^\d{6}$/);
  await owner.page.getByRole("button", { name: "Approve" }).click();
  await page.getByLabel("Account ID", { exact: true }).waitFor();
  await owner.page.getByRole("button", { name: "Close" }).click();
  await page.getByRole("button", { name: "Close" }).click();
  return { context, page, name: `${owner.name} (linked)`, accountId: owner.accountId, invite: owner.invite };
}

/**
 * A person whose browser keeps its profile in `profileDir` (so a test can read the profile's raw files): opens the
 * app, creates an account, closes the welcome dialog.
 */
export async function personWithProfile(
  env: WebEnv,
  profileDir: string,
  name: string,
): Promise<{ context: BrowserContext; page: Page; invite: string }> {
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: await sparticuz.executablePath(),
    args: ["--no-sandbox", "--no-zygote"],
    headless: true,
    viewport: { width: 1000, height: 700 },
  });
  const page = await context.newPage();
  await page.goto(`${env.relay.url}/`);
  await page.getByRole("textbox", { name: "Display name" }).fill(name);
  await page.getByRole("button", { name: "Create account" }).click();
  const invite = (await page.getByLabel("Invite link", { exact: true }).textContent()) ?? "";
  await page.getByRole("button", { name: "Close" }).click();
  return { context, page, invite };
}

/**
 * Every file under `dir` (a browser profile: the store's files, IndexedDB, caches, everything) as latin1 text, so
 * any byte string can be searched for; the browser's own files that vanish while they are read are skipped.
 */
export function profileFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    try {
      if (statSync(p).isDirectory()) out.push(...profileFiles(p));
      else out.push(readFileSync(p).toString("latin1"));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
  }
  return out;
}
