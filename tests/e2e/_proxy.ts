/**
 * A TCP proxy for fault injection: listens on 127.0.0.1, forwards every
 * connection to a target port (the relay's sshd), and can cut a connection
 * in both directions once N bytes have gone client → server: exactly N bytes
 * are forwarded, then both sockets are closed.
 *
 * @module
 */

/** What happened on one proxied connection. */
export interface ProxiedConnection {
  /** Bytes forwarded client → server. */
  up: number;
  /** Bytes forwarded server → client. */
  down: number;
  /** True when the proxy cut it (after `cut` bytes up). */
  cut: boolean;
  /** Resolves when both directions are done and both sockets closed. */
  done: Promise<void>;
}

/** A running proxy. */
export interface Proxy {
  /** The port it listens on (127.0.0.1). */
  port: number;
  /**
   * Cut connections accepted from now on after `n` bytes client → server
   * (undefined: forward everything). With `count`, only the next `count`
   * connections are cut; later ones are forwarded whole.
   */
  setCut(n: number | undefined, count?: number): void;
  /** Every connection accepted so far, in order. */
  connections: ProxiedConnection[];
  /** Stops listening, closes every connection and waits for them. */
  close(): Promise<void>;
}

const CHUNK = 65536;

function closeQuietly(c: Deno.Conn): void {
  try {
    c.close();
  } catch {
    // closed already
  }
}

/** Starts a proxy to 127.0.0.1:`target` (on `port`, or a free one). */
export function startProxy(target: number, port = 0): Proxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  let cutAfter: number | undefined;
  /** How many more connections get `cutAfter` (undefined: all). */
  let cutLeft: number | undefined;
  const connections: ProxiedConnection[] = [];
  const open = new Set<Deno.Conn>();
  let closing = false;

  const handle = async (client: Deno.Conn, record: ProxiedConnection, cut: number | undefined) => {
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: target });
    } catch {
      closeQuietly(client);
      open.delete(client);
      return;
    }
    open.add(server);
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      closeQuietly(client);
      closeQuietly(server);
      open.delete(client);
      open.delete(server);
    };
    const up = (async () => {
      const buf = new Uint8Array(CHUNK);
      try {
        for (;;) {
          if (cut !== undefined && record.up >= cut) {
            record.cut = true;
            finish();
            return;
          }
          const n = await client.read(buf);
          if (n === null) break;
          const take = cut === undefined ? n : Math.min(n, cut - record.up);
          for (let done = 0; done < take;) done += await server.write(buf.subarray(done, take));
          record.up += take;
          if (take < n) {
            record.cut = true;
            finish();
            return;
          }
        }
        // Client half-closed: pass the EOF on.
        await server.closeWrite().catch(() => {});
      } catch {
        finish();
      }
    })();
    const down = (async () => {
      const buf = new Uint8Array(CHUNK);
      try {
        for (;;) {
          const n = await server.read(buf);
          if (n === null) break;
          for (let done = 0; done < n;) done += await client.write(buf.subarray(done, n));
          record.down += n;
        }
      } catch {
        // cut, or the client went away
      }
      finish();
    })();
    await Promise.allSettled([up, down]);
    finish();
  };

  const accepting = (async () => {
    for (;;) {
      let client: Deno.Conn;
      try {
        client = await listener.accept();
      } catch {
        return; // listener closed
      }
      if (closing) {
        closeQuietly(client);
        continue;
      }
      open.add(client);
      let resolve!: () => void;
      const record: ProxiedConnection = {
        up: 0,
        down: 0,
        cut: false,
        done: new Promise<void>((r) => (resolve = r)),
      };
      connections.push(record);
      const cut = cutAfter;
      if (cutLeft !== undefined && --cutLeft <= 0) {
        cutAfter = undefined;
        cutLeft = undefined;
      }
      handle(client, record, cut).finally(resolve);
    }
  })();

  return {
    port: (listener.addr as Deno.NetAddr).port,
    setCut(n, count) {
      cutAfter = n;
      cutLeft = n === undefined ? undefined : count;
    },
    connections,
    async close() {
      closing = true;
      try {
        listener.close();
      } catch {
        // closed already
      }
      await accepting;
      for (const c of open) closeQuietly(c);
      open.clear();
      await Promise.all(connections.map((c) => c.done));
    },
  };
}
