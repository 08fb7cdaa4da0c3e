/**
 * `sshsendmail setup`'s local steps: the satellite's key pair (made with
 * Web Crypto, no ssh-keygen) and its hand-over to the service account,
 * and the directories setup writes into. Effectful edge module.
 *
 * @module
 */

import { ConfigError } from "./client_config.ts";
import { privateKeyFile, publicKeyLine, seedFromPkcs8 } from "./openssh_key.ts";
import { SERVICE_USER } from "../shared/layout.ts";
import { SETUP_DIR } from "./client_constants.ts";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** The service account's numeric ids (what Deno.chown takes). */
export interface Account {
  uid: number;
  gid: number;
}

/** The service account from /etc/passwd, or undefined when it does not exist. */
export async function serviceAccount(): Promise<Account | undefined> {
  const passwd = await Deno.readTextFile("/etc/passwd").catch(() => "");
  for (const line of passwd.split("\n")) {
    const [name, , uid, gid] = line.split(":");
    if (name === SERVICE_USER && /^[0-9]+$/.test(uid ?? "") && /^[0-9]+$/.test(gid ?? "")) {
      return { uid: Number(uid), gid: Number(gid) };
    }
  }
  return undefined;
}

export function dirOf(path: string): string {
  return path.slice(0, path.lastIndexOf("/")) || "/";
}

/**
 * Makes a directory (and missing parents) that setup writes into: 0700, or
 * 0755 when the service account must reach what it holds (chmod, so the
 * umask does not decide). Returns whether it was made.
 */
export async function makeDir(dir: string, account: Account | undefined): Promise<boolean> {
  const missing: string[] = [];
  for (let d = dir; !(await exists(d)); d = dirOf(d)) missing.unshift(d);
  for (const d of missing) {
    await Deno.mkdir(d, { mode: 0o700 });
    if (account !== undefined) await Deno.chmod(d, 0o755);
  }
  return missing.length > 0;
}

/**
 * Hands the private key to the service account: its owner and group, mode
 * 0600. Its directory stays root's; one setup made, or the default one
 * (which setup used to make 0700), becomes 0755 so the account can reach
 * the key without writing there. Returns the words for the step line.
 */
export async function handKey(
  identity: string,
  account: Account,
  dirMade: boolean,
): Promise<string> {
  try {
    const key = await Deno.lstat(identity);
    if (!key.isFile) throw new ConfigError(`${identity} is not a regular file`);
    await Deno.chown(identity, account.uid, account.gid);
    await Deno.chmod(identity, 0o600);
    const dir = dirOf(identity);
    let st = await Deno.lstat(dir);
    if (st.isDirectory && st.uid === 0 && (dirMade || dir === SETUP_DIR)) {
      await Deno.chmod(dir, 0o755);
      st = await Deno.lstat(dir);
    }
    const owner = st.uid === 0 ? "root" : `uid ${st.uid}`;
    const mode = ((st.mode ?? 0) & 0o7777).toString(8).padStart(4, "0");
    return `, owned by ${SERVICE_USER} (0600) in ${dir} (${owner}, ${mode})`;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(
      `cannot hand ${identity} to the ${SERVICE_USER} account (run setup as root): ${
        err instanceof Error ? err.message.split("\n")[0] : String(err)
      }`,
    );
  }
}

/** SHA-256 of `data` (Web Crypto). */
export async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(data)));
}

/** Step 1: the key pair; made only if `identity` does not exist yet. */
export async function ensureKey(
  identity: string,
  comment: string,
  account: Account | undefined,
): Promise<{ line: string; made: boolean; dirMade: boolean }> {
  if (await exists(identity)) {
    try {
      const line = (await Deno.readTextFile(`${identity}.pub`)).trim();
      return { line, made: false, dirMade: false };
    } catch {
      throw new ConfigError(`${identity} exists but ${identity}.pub does not`);
    }
  }
  const dirMade = await makeDir(dirOf(identity), account);
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const seed = seedFromPkcs8(
    new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey)),
  );
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const check = crypto.getRandomValues(new Uint32Array(1))[0]!;
  await Deno.writeTextFile(identity, privateKeyFile(seed, pub, comment, check), {
    createNew: true,
    mode: 0o600,
  });
  const line = publicKeyLine(pub, comment);
  await Deno.writeTextFile(`${identity}.pub`, `${line}\n`, { mode: 0o644 });
  return { line, made: true, dirMade };
}
