/**
 * A throwaway Debian system for the package test: debootstrap (minbase) of
 * the machine's own release from the archive its apt uses, cached as a
 * tarball under /var/cache/rsendmail-ng-tests/ and unpacked afresh into a
 * temporary directory for each test, with /proc mounted and no daemon
 * started by a package (policy-rc.d). The packages apt downloads into it
 * are kept in the cache too, so a second run downloads little.
 *
 * The root shares this machine's network (the test bed's sshd on
 * 127.0.0.1 is reachable from it). Closing it kills every process whose
 * root is inside it, unmounts /proc, and removes the tree without crossing
 * into another file system.
 *
 * @module
 */

import { exists, run, type RunOptions, type RunResult } from "./_bed.ts";

const CACHE = "/var/cache/rsendmail-ng-tests";
const CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin";

/** The Debian archive this machine's apt uses for its own release. */
export interface Archive {
  mirror: string;
  suite: string;
}

/** The archive of this machine's release (VERSION_CODENAME) with `main`, from apt's sources. */
export async function machineArchive(): Promise<Archive> {
  const release = await Deno.readTextFile("/etc/os-release");
  const suite = /^VERSION_CODENAME=(\S+)$/m.exec(release)?.[1];
  if (suite === undefined) throw new Error("no VERSION_CODENAME in /etc/os-release");
  const sources: string[] = [];
  const dir = "/etc/apt/sources.list.d";
  for (const e of await list(dir)) {
    if (e.name.endsWith(".sources") || e.name.endsWith(".list")) sources.push(`${dir}/${e.name}`);
  }
  sources.sort();
  sources.unshift("/etc/apt/sources.list");
  for (const file of sources) {
    const text = await Deno.readTextFile(file).catch(() => "");
    if (file.endsWith(".sources")) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (name: string) =>
          new RegExp(`^${name}:[ \\t]*(.*)$`, "mi").exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
        if (field("Enabled")[0]?.toLowerCase() === "no") continue;
        if (!field("Types").includes("deb")) continue;
        if (!field("Suites").includes(suite) || !field("Components").includes("main")) continue;
        const uri = field("URIs").find((u) => /^https?:\/\//.test(u));
        if (uri !== undefined) return { mirror: uri, suite };
      }
    } else {
      for (const line of text.split("\n")) {
        const m = /^deb\s+(?:\[[^\]]*\]\s+)?(https?:\/\/\S+)\s+(\S+)\s+(.*)$/.exec(line.trim());
        if (m && m[2] === suite && m[3]!.split(/\s+/).includes("main")) {
          return { mirror: m[1]!, suite };
        }
      }
    }
  }
  throw new Error(`apt has no source for ${suite} main`);
}

/** The entries of a directory; none when it cannot be read. */
async function list(dir: string): Promise<Deno.DirEntry[]> {
  return await Array.fromAsync(Deno.readDir(dir)).catch(() => []);
}

async function hex(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(d).slice(0, 6), (b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
}

/** Why there is no throwaway root: debootstrap could not fetch the archive. */
export class ArchiveUnreachable extends Error {
  override name = "ArchiveUnreachable";
}

/**
 * The cached minbase tarball of `archive`, made with debootstrap when
 * missing (a few minutes). Throws ArchiveUnreachable when debootstrap
 * cannot get the archive's Release file.
 */
export async function baseTarball(archive: Archive): Promise<string> {
  const tarball = `${CACHE}/${archive.suite}-minbase-${await hex(archive.mirror)}.tar`;
  if (await exists(tarball)) return tarball;
  await Deno.mkdir(CACHE, { recursive: true, mode: 0o755 });
  const target = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "rsm-debootstrap-" });
  try {
    const res = await run("/usr/sbin/debootstrap", [
      "--variant=minbase",
      "--components=main",
      archive.suite,
      target,
      archive.mirror,
    ], { check: false, env: { PATH: CLEAN_PATH } });
    if (res.code !== 0) {
      const why = `${res.stdout}\n${res.stderr}`.trim().split("\n").slice(-5).join("\n");
      if (
        /Failed getting release file|Could not resolve|couldn't download|Connection refused/i.test(
          why,
        )
      ) {
        throw new ArchiveUnreachable(`debootstrap cannot reach ${archive.mirror}: ${why}`);
      }
      throw new Error(`debootstrap ${archive.suite} ${archive.mirror} exited ${res.code}: ${why}`);
    }
    await Deno.remove(`${target}/var/cache/apt/archives`, { recursive: true }).catch(() => {});
    await Deno.mkdir(`${target}/var/cache/apt/archives/partial`, { recursive: true });
    await Deno.chmod(target, 0o755);
    const partial = `${tarball}.${Deno.pid}`;
    await run("/usr/bin/tar", ["--numeric-owner", "-C", target, "-cf", partial, "."]);
    await Deno.rename(partial, tarball);
    return tarball;
  } finally {
    await run("/bin/rm", ["-rf", "--one-file-system", target], { check: false });
  }
}

/** A throwaway root. */
export interface Chroot {
  /** Its directory on this machine. */
  dir: string;
  /** Runs a program inside, as root, with a clean environment (plus `opts.env`). */
  run(argv: string[], opts?: RunOptions): Promise<RunResult>;
  /** The argv (on this machine) that runs `argv` inside with a clean environment. */
  argv(argv: string[], env?: Record<string, string>): string[];
  /** Kills what runs inside, keeps apt's downloads, unmounts and removes the tree. */
  close(): Promise<void>;
}

/** Mount points at or below `dir`, deepest first (Deno may not read /proc itself). */
async function mountsUnder(dir: string): Promise<string[]> {
  const res = await run("/usr/bin/awk", ["{ print $2 }", "/proc/self/mounts"]);
  return res.stdout.split("\n").map((p) => p.replace(/\\040/g, " "))
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Kills every process whose root directory is `dir` or below it. */
async function killInside(dir: string): Promise<void> {
  await run("/bin/sh", [
    "-c",
    `for p in /proc/[0-9]*; do
       r=$(readlink "$p/root" 2>/dev/null) || continue
       case $r in "$1" | "$1"/*) kill -9 "\${p#/proc/}" 2>/dev/null ;; esac
     done; true`,
    "sh",
    dir,
  ]);
}

/** Unpacks `tarball` into a fresh directory and makes it usable as a root. */
export async function openChroot(tarball: string, debCache: string): Promise<Chroot> {
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "rsm-chroot-" });
  await Deno.chmod(dir, 0o755);
  const archives = `${dir}/var/cache/apt/archives`;
  const close = async () => {
    await killInside(dir);
    await new Promise((r) => setTimeout(r, 100));
    for (const m of await mountsUnder(dir)) {
      const u = await run("/bin/umount", [m], { check: false });
      if (u.code !== 0) await run("/bin/umount", ["-l", m], { check: false });
    }
    const left = await mountsUnder(dir);
    if (left.length > 0) throw new Error(`still mounted, ${dir} kept: ${left.join(" ")}`);
    // apt's downloads go back into the cache for the next run.
    await Deno.mkdir(debCache, { recursive: true });
    for (const e of await list(archives)) {
      if (e.isFile && e.name.endsWith(".deb") && !(await exists(`${debCache}/${e.name}`))) {
        await Deno.copyFile(`${archives}/${e.name}`, `${debCache}/${e.name}`).catch(() => {});
      }
    }
    await run("/bin/rm", ["-rf", "--one-file-system", dir], { check: false });
  };
  try {
    await run("/usr/bin/tar", ["--numeric-owner", "-C", dir, "-xf", tarball]);
    // The tree's top is a root file system's: everyone may enter it.
    await Deno.chmod(dir, 0o755);
    await run("/bin/mount", ["-t", "proc", "proc", `${dir}/proc`]);
    // No daemon is started by a package's scripts (cron's, for one).
    await Deno.writeTextFile(`${dir}/usr/sbin/policy-rc.d`, "#!/bin/sh\nexit 101\n", {
      mode: 0o755,
    });
    await Deno.chmod(`${dir}/usr/sbin/policy-rc.d`, 0o755);
    await Deno.copyFile("/etc/resolv.conf", `${dir}/etc/resolv.conf`).catch(() => {});
    await Deno.mkdir(`${archives}/partial`, { recursive: true });
    for (const e of await list(debCache)) {
      if (e.isFile && e.name.endsWith(".deb")) {
        await Deno.copyFile(`${debCache}/${e.name}`, `${archives}/${e.name}`);
      }
    }
  } catch (err) {
    await close().catch(() => {});
    throw err;
  }
  const argv = (words: string[], env: Record<string, string> = {}) => [
    dir,
    "/usr/bin/env",
    "-i",
    `PATH=${CLEAN_PATH}`,
    "HOME=/root",
    "LANG=C.UTF-8",
    "DEBIAN_FRONTEND=noninteractive",
    ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
    ...words,
  ];
  return {
    dir,
    argv,
    run: (words, opts = {}) =>
      run("/usr/sbin/chroot", argv(words, opts.env), {
        ...(opts.stdin === undefined ? {} : { stdin: opts.stdin }),
        ...(opts.check === undefined ? {} : { check: opts.check }),
      }),
    close,
  };
}

/** Where apt's downloads for the throwaway roots of `archive` are kept. */
export async function debCacheOf(archive: Archive): Promise<string> {
  return `${CACHE}/${archive.suite}-debs-${await hex(archive.mirror)}`;
}
