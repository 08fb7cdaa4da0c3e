/**
 * `deno task package`: the Debian packages, built the Debian way from
 * debian/ (debhelper, `dpkg-buildpackage -us -uc -b`), into dist/pkg/:
 *
 * - rsendmail-ng-runtime (amd64): the pinned Deno at /usr/lib/rsendmail-ng/deno.
 * - rsendmail-ng-relay (all): /usr/sbin/rsendmail and rsendmail(8).
 * - rsendmail-ng-client (all): /usr/sbin/sshsendmail, sshsendmail(8), the
 *   conffile /etc/sshsendmail.conf (a commented template) and the delivery
 *   service sshsendmail.service (dh_installsystemd: enabled, started when
 *   systemd runs); its maintainer scripts (scripts/service_account.sh)
 *   make the account sshsendmail, the spool, and take over old queues.
 * - rsendmail-ng-mta (all): /usr/sbin/sendmail, /usr/lib/sendmail,
 *   /usr/bin/mailq, /usr/sbin/newaliases (links to sshsendmail); Provides,
 *   Conflicts and Replaces mail-transport-agent.
 *
 * Also in dist/pkg/: the .buildinfo and .changes (what lintian reads). The
 * build itself is debian/rules; this script checks what it needs before
 * it starts (the pinned Deno in node_modules, dpkg-buildpackage, debhelper,
 * debian/changelog's version equal to client.ts's VERSION), runs it and
 * lists the .debs. Reproducible: building twice gives the same bytes.
 *
 * Environment: RSENDMAIL_PKG_COMPRESS=gzip trades size for a much faster
 * build (the tests); the default is xz.
 *
 * @module
 */

import { PACKAGE } from "../docs/manual.ts";
import { readVersion } from "./man.ts";

/** Where the runtime package puts Deno; the bundles' shebangs name it. */
export const RUNTIME_DENO = `/usr/lib/${PACKAGE}/deno`;
/** The binary packages debian/control defines, in build order. */
export const PACKAGES = ["runtime", "relay", "client", "mta"].map((p) => `${PACKAGE}-${p}`);
const OUT = "dist/pkg";
const DENO = "node_modules/deno/deno";

async function run(cmd: string, args: string[], env?: Record<string, string>): Promise<string> {
  let out;
  try {
    out = await new Deno.Command(cmd, {
      args,
      stdout: "piped",
      stderr: "piped",
      ...(env === undefined ? {} : { env }),
    }).output();
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    throw new Error(
      `${cmd} is missing: run scripts/bootstrap (it installs debhelper and dpkg-dev)`,
    );
  }
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")} exited ${out.code}:\n${dec.decode(out.stdout)}${
        dec.decode(out.stderr)
      }`,
    );
  }
  return dec.decode(out.stdout);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

/** Builds the packages; returns the .deb paths. */
export async function buildPackages(): Promise<string[]> {
  const pinned = (await Deno.readTextFile(".deno-version")).trim();
  const reported = await run(DENO, ["--version"]).catch(() => "");
  if (!reported.startsWith(`deno ${pinned} `)) {
    throw new Error(`${DENO} is not the pinned Deno ${pinned}: run scripts/bootstrap`);
  }
  const version = await readVersion();
  const changelog = (await run("/usr/bin/dpkg-parsechangelog", ["-S", "Version"])).trim();
  if (changelog !== version) {
    throw new Error(
      `debian/changelog's version is ${changelog}, client.ts's VERSION ${version}: add a changelog entry (dch -v ${version})`,
    );
  }
  await Deno.remove(OUT, { recursive: true }).catch(() => {});
  await Deno.mkdir(OUT, { recursive: true });
  const arch = (await run("/usr/bin/dpkg", ["--print-architecture"])).trim();
  const base = `${OUT}/${PACKAGE}_${version}_${arch}`;
  await run("/usr/bin/dpkg-buildpackage", [
    "-us",
    "-uc",
    "-b",
    `--buildinfo-file=${base}.buildinfo`,
    `--buildinfo-option=-u${OUT}`,
    `--changes-file=${base}.changes`,
    `--changes-option=-u${OUT}`,
  ], { RSENDMAIL_DEB_DESTDIR: OUT });
  const debs = [];
  for (const p of PACKAGES) {
    const deb = `${OUT}/${p}_${version}_${p.endsWith("runtime") ? arch : "all"}.deb`;
    if (!(await exists(deb))) throw new Error(`dpkg-buildpackage made no ${deb}`);
    debs.push(deb);
  }
  return debs;
}

if (import.meta.main) {
  try {
    for (const deb of await buildPackages()) {
      console.log(`${deb} (${(await Deno.stat(deb)).size} bytes)`);
    }
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    Deno.exit(1);
  }
}
