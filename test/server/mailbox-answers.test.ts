// What docs/mailbox.md ("Frames", "Answers") promises about each client frame: an ack, known or not, is never
// answered; ping gets pong; a send gets its send_result; anything unparseable an error frame; and online-only
// messages are not held back by a full in-flight window.
import { describe, expect, it } from "vitest";
import { ciphertext, connect, newAccount, primary, sendOk, to, withObjectVars } from "./ws-helpers.ts";

describe("the answer to each client frame", () => {
  it("an ack of an unknown, well-formed id gets no answer and deletes nothing", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    await sendOk(alice, [bob]);
    const conn = await connect(bob.auth);
    const [m] = await conn.messages(1);
    await conn.next("queue_empty");
    conn.ack([crypto.randomUUID(), "not-a-uuid-but-short"]);
    expect(await conn.quiet()).toBe(true); // nothing came back before the barrier's pong
    conn.ack([m!.id]);
    expect(await conn.quiet()).toBe(true); // a real ack is not answered either
    conn.close();
    const again = await connect(bob.auth);
    expect((await again.next("queue_empty")).type).toBe("queue_empty"); // acked: not delivered again
    again.close();
  });

  it("ping, send and malformed frames each get their one answer, and the socket stays open", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    const conn = await connect(alice.auth);
    await conn.next("queue_empty");
    conn.ping();
    expect(await conn.next("pong")).toEqual({ type: "pong" });
    conn.ws.send(
      JSON.stringify({
        type: "send",
        id: "s1",
        destination: bob.accountId,
        message: { messages: [to(bob)], timestamp: 1 }, // online and urgent left out: optional
      }),
    );
    expect(await conn.next("send_result")).toMatchObject({ type: "send_result", id: "s1", status: 200 });
    for (const bad of [
      "not json",
      '{"type":"nope"}',
      '{"type":"ack","ids":[]}',
      `{"type":"ack","ids":["${"x".repeat(65)}"]}`,
    ]) {
      conn.ws.send(bad);
      expect(await conn.next(`error for ${bad}`), bad).toMatchObject({ type: "error" });
    }
    conn.ws.send(new Uint8Array([1, 2, 3]));
    expect(await conn.next("error for a binary frame")).toMatchObject({ type: "error", code: "BAD_REQUEST" });
    expect(await conn.quiet()).toBe(true);
    conn.close();
  });

  it("online-only messages go out while the in-flight window is full, and need no ack", async () => {
    const alice = primary(await newAccount());
    const bob = primary(await newAccount());
    await withObjectVars(bob.accountId, { MAX_UNACKED_PER_CONNECTION: "1" });
    await sendOk(alice, [bob]);
    await sendOk(alice, [bob]);
    const conn = await connect(bob.auth);
    await conn.messages(1);
    expect(await conn.quiet()).toBe(true); // window full: the second stored message waits
    const typing = ciphertext(8);
    await sendOk(alice, [bob], { online: true, content: typing });
    const [live] = await conn.messages(1);
    expect(live!.envelope).toMatchObject({ online: true, content: typing });
    expect(await conn.quiet()).toBe(true); // still only the one stored message in flight
    conn.close();
  });
});
