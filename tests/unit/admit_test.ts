import assert from "node:assert/strict";
import type { DeliveryRecord } from "../../lib/relay/dedup_io.ts";
import { admit, type Session } from "../../lib/relay/session_io.ts";
import { MailError } from "../../lib/shared/errors.ts";
import { DEFAULT_CONFIG } from "../../lib/shared/relay_config.ts";
import { parseSendmailArgs } from "../../lib/shared/sendmail_args.ts";
import type { ByteReader } from "../../lib/shared/spool_io.ts";
import { Sha256 } from "../../lib/shared/sha256.ts";

const MESSAGE = new TextEncoder().encode("Subject: t\n\nhello\n");
const SHA = new Sha256().update(MESSAGE).hex();
const ID = "m0123456789abcdef";

/** `bytes` as a reader. */
function readerOf(bytes: Uint8Array): ByteReader {
  let at = 0;
  return {
    read(p) {
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, bytes.length - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

/** A record in memory: `delivered` holds id → SHA-256. */
function recordOf(delivered: Map<string, string>) {
  const events: string[] = [];
  const record: DeliveryRecord = {
    has: (id, sha) => Promise.resolve(delivered.get(id) === sha),
    add: (id, sha) => {
      delivered.set(id, sha);
      return Promise.resolve();
    },
    prune: () => Promise.resolve(),
    claim(id) {
      events.push(`claim ${id}`);
      return Promise.resolve(() => {
        events.push(`release ${id}`);
        return Promise.resolve();
      });
    },
  };
  return { record, events };
}

const request = (sha = SHA) =>
  parseSendmailArgs([
    "sendmail",
    `--size=${MESSAGE.length}`,
    `--sha256=${sha}`,
    `--id=${ID}`,
    "--",
    "b@example.org",
  ]);

const sessionOf = (record: DeliveryRecord): Session => ({
  config: { ...DEFAULT_CONFIG },
  record,
  shortLived: false,
});

Deno.test("admit: a repeat of a delivered id is a duplicate even when its bytes were damaged in transit (the record holds its SHA-256); no lock is taken", async () => {
  const { record, events } = recordOf(new Map([[ID, SHA]]));
  const damaged = MESSAGE.slice();
  damaged[0] = 0x73; // "s"
  const fields = {};
  const admitted = await admit(sessionOf(record), request(), readerOf(damaged), fields);
  assert.equal(admitted.kind, "duplicate");
  assert.deepEqual(events, []);
  assert.equal((fields as { event?: string }).event, "duplicate");
});

Deno.test("admit (control): the same damaged bytes under an id not delivered are refused (5.6.0), and no lock is taken", async () => {
  const { record, events } = recordOf(new Map());
  const damaged = MESSAGE.slice();
  damaged[0] = 0x73;
  await assert.rejects(
    admit(sessionOf(record), request(), readerOf(damaged), {}),
    (err) => err instanceof MailError && err.status === "5.6.0",
  );
  assert.deepEqual(events, []);
});

Deno.test("admit: an id delivered with other bytes (another SHA-256) is no duplicate: ready, the lock held until finish", async () => {
  const { record, events } = recordOf(new Map([[ID, "0".repeat(64)]]));
  const admitted = await admit(sessionOf(record), request(), readerOf(MESSAGE), {});
  assert.equal(admitted.kind, "ready");
  assert.deepEqual(events, [`claim ${ID}`]);
});

Deno.test("admit: the id's lock is taken once the message is read (a peer's upload, however slow, holds none), then the record is asked again", async () => {
  const { record, events } = recordOf(new Map());
  const asked: string[] = [];
  const watched: DeliveryRecord = {
    ...record,
    has: (id, sha) => {
      asked.push(`has after ${events.length} events`);
      return record.has(id, sha);
    },
  };
  const input = readerOf(MESSAGE);
  const reader: ByteReader = {
    async read(p) {
      const n = await input.read(p);
      if (n === null) events.push("read to the end");
      return n;
    },
  };
  const admitted = await admit(sessionOf(watched), request(), reader, {});
  assert.equal(admitted.kind, "ready");
  assert.deepEqual(events, ["read to the end", `claim ${ID}`]);
  assert.deepEqual(asked, ["has after 2 events"]);
});

Deno.test("admit: a relay that delivered the id while this one read it (the lock waited for it) makes this a duplicate; the lock is released", async () => {
  const delivered = new Map<string, string>();
  const { record, events } = recordOf(delivered);
  const racing: DeliveryRecord = {
    ...record,
    claim(id) {
      // The other relay records the id, then lets go of the lock.
      delivered.set(id, SHA);
      return record.claim(id);
    },
  };
  const admitted = await admit(sessionOf(racing), request(), readerOf(MESSAGE), {});
  assert.equal(admitted.kind, "duplicate");
  assert.deepEqual(events, [`claim ${ID}`, `release ${ID}`]);
});
