/**
 * `deno task package`: Debian packages in dist/pkg/, built with dpkg-deb.
 *
 * - rsendmail-ng-runtime (amd64): the pinned Deno at /usr/lib/rsendmail-ng/deno.
 * - rsendmail-ng-relay (all): /usr/sbin/rsendmail and rsendmail(8).
 * - rsendmail-ng-client (all): /usr/sbin/sshsendmail, sshsendmail(8),
 *   /etc/sshsendmail.conf (a commented example, a conffile) and the
 *   delivery service's unit sshsendmail.service. Its maintainer scripts
 *   (scripts/service_account.sh) create the account `sshsendmail`, make
 *   /var/spool/sshsendmail (`sshsendmail --init-spool`), hand the key to
 *   the account, take over the old per-user queues (each as its owner),
 *   and enable the unit (and start it when systemd runs).
 *
 * Purging the relay leaves the duplicate record (/var/tmp/rsendmail-UID/):
 * it is runtime state that any rsendmail of that account shares (a copy from
 * scripts/install, a test build), and /var/tmp ages it out. Purging the
 * client removes /etc/sshsendmail/, and the spool and the account unless
 * mail may wait in the spool (then both stay).
 *
 * The names and paths do not clash with Debian's `rsendmail` package (which
 * owns /usr/bin/rsendmail and /usr/bin/sshsendmail). The bundles are built
 * into dist/pkgbuild/ with RSENDMAIL_DENO=/usr/lib/rsendmail-ng/deno, so
 * dist/rsendmail and dist/sshsendmail (what the tests run) stay as they are.
 * Every package has the version of client.ts's VERSION constant.
 *
 * Environment: RSENDMAIL_MAINTAINER overrides the Maintainer field.
 *
 * @module
 */

import { EXAMPLE_CONFIG, PACKAGE } from "../docs/manual.ts";
import { readVersion, writePages } from "./man.ts";

/** Where the runtime package puts Deno; the bundles' shebangs name it. */
export const RUNTIME_DENO = `/usr/lib/${PACKAGE}/deno`;
const BUILD = "dist/pkgbuild";
const OUT = "dist/pkg";
const DENO_SOURCE = "node_modules/deno";
const MAINTAINER = Deno.env.get("RSENDMAIL_MAINTAINER") ??
  "rsendmail-ng maintainers <rsendmail-ng@localhost>";

/** One file of a package: its path in the package and where its bytes come from. */
interface Entry {
  path: string;
  mode: number;
  /** A file to copy, or the bytes to write. */
  from: string | Uint8Array;
  gzip?: boolean;
}

interface Spec {
  name: string;
  arch: "amd64" | "all";
  depends: string[];
  description: string;
  long: string[];
  files: Entry[];
  conffiles?: string[];
  scripts?: Record<string, string>;
}

const text = (s: string) => new TextEncoder().encode(s);

async function gzip(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function run(cmd: string, args: string[], env?: Record<string, string>): Promise<string> {
  const out = await new Deno.Command(cmd, {
    args,
    stdout: "piped",
    stderr: "piped",
    ...(env === undefined ? {} : { env }),
  }).output();
  const dec = new TextDecoder();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} exited ${out.code}: ${dec.decode(out.stderr)}`);
  }
  return dec.decode(out.stdout);
}

/** A shell script for a maintainer hook; `lib` is scripts/service_account.sh when it needs it. */
function hook(body: string, lib = ""): string {
  return `#!/bin/sh\n# Written by scripts/package.ts.\nset -e\n${
    lib === "" ? "" : `\n${lib.trim()}\n\n`
  }${body.trim()}\n\nexit 0\n`;
}

const UNIT = "sshsendmail.service";

/** The old flush timer, if the admin enabled it, goes before its files do. */
const CLIENT_PREINST = hook(`
if [ "$1" = upgrade ] && [ -L /etc/systemd/system/timers.target.wants/sshsendmail-flush.timer ]; then
  if [ -d /run/systemd/system ]; then
    systemctl --system stop sshsendmail-flush.timer sshsendmail-flush.service >/dev/null 2>&1 || true
  fi
  systemctl --system disable sshsendmail-flush.timer >/dev/null 2>&1 || true
fi
`);

/**
 * The account, the spool (`sshsendmail --init-spool`: the top root's 0755,
 * the parts the account's), the key handed to the account, the old
 * per-user queues taken over (each as its owner, into the drop directory),
 * then the service enabled and, when systemd runs, (re)started.
 */
const CLIENT_POSTINST = (lib: string) =>
  hook(
    `
if [ "$1" = configure ]; then
  sshsendmail_account
  sshsendmail_init_spool /usr/sbin/sshsendmail
  sshsendmail_key
  sshsendmail_migrate /usr/sbin/sshsendmail
  if command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper unmask ${UNIT} >/dev/null || true
    if deb-systemd-helper --quiet was-enabled ${UNIT}; then
      deb-systemd-helper enable ${UNIT} >/dev/null || true
    else
      deb-systemd-helper update-state ${UNIT} >/dev/null || true
    fi
    if [ -d /run/systemd/system ]; then
      systemctl --system daemon-reload >/dev/null || true
      deb-systemd-invoke restart ${UNIT} >/dev/null || true
    fi
  elif [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
    systemctl --system enable --now ${UNIT} >/dev/null || true
    if [ -n "$2" ]; then systemctl --system try-restart ${UNIT} >/dev/null || true; fi
  fi
fi
`,
    lib,
  );

const CLIENT_PRERM = hook(`
if [ "$1" = remove ]; then
  if [ -d /run/systemd/system ]; then
    if command -v deb-systemd-invoke >/dev/null 2>&1; then
      deb-systemd-invoke stop ${UNIT} >/dev/null || true
    else
      systemctl --system stop ${UNIT} >/dev/null 2>&1 || true
    fi
  fi
  if ! command -v deb-systemd-helper >/dev/null 2>&1; then
    systemctl --system disable ${UNIT} >/dev/null 2>&1 || true
  fi
fi
`);

/**
 * Purge: what setup wrote, the spool unless mail may wait in it (emptied as
 * the account, never by root), and then the account; a kept spool keeps
 * its account too, so a reinstall finds its mail.
 */
const CLIENT_POSTRM = (lib: string) =>
  hook(
    `
if [ "$1" = remove ] || [ "$1" = purge ]; then
  if [ -d /run/systemd/system ]; then systemctl --system daemon-reload >/dev/null 2>&1 || true; fi
fi
if [ "$1" = remove ] && command -v deb-systemd-helper >/dev/null 2>&1; then
  deb-systemd-helper mask ${UNIT} >/dev/null || true
fi
if [ "$1" = purge ]; then
  if command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper purge ${UNIT} >/dev/null || true
    deb-systemd-helper unmask ${UNIT} >/dev/null || true
  fi
  # What setup wrote besides the conffile (dpkg removes that): the key and
  # the relay's host key, and the config it replaced.
  rm -rf /etc/sshsendmail
  rm -f /etc/sshsendmail.conf.bak
  if sshsendmail_remove_spool; then
    sshsendmail_delete_account
  else
    echo "rsendmail-ng-client: kept $SSHSENDMAIL_SPOOL and the account $SSHSENDMAIL_ACCOUNT; deliver or remove the mail, then delete both by hand" >&2
  fi
fi
`,
    lib,
  );

function copyright(extra = ""): Uint8Array {
  return text(
    `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n` +
      `Upstream-Name: ${PACKAGE}\n\nFiles: *\nCopyright: the rsendmail-ng authors\n` +
      `License: see the project repository\n${extra}`,
  );
}

/** Stages one package's tree and builds its .deb; returns the .deb path. */
async function build(spec: Spec, version: string): Promise<string> {
  const root = `${BUILD}/root/${spec.name}`;
  await Deno.remove(root, { recursive: true }).catch(() => {});
  let bytes = 0;
  const sums: string[] = [];
  const docs = `/usr/share/doc/${spec.name}`;
  const files: Entry[] = [
    ...spec.files,
    {
      path: `${docs}/copyright`,
      mode: 0o644,
      from: spec.name.endsWith("runtime")
        ? copyright(
          `\nFiles: usr/lib/${PACKAGE}/deno\nCopyright: the Deno authors\nLicense: MIT\n` +
            (await Deno.readTextFile(`${DENO_SOURCE}/LICENSE`).catch(() => ""))
              .split("\n").map((l) => (l.trim() === "" ? " ." : ` ${l}`)).join("\n") +
            "\n",
        )
        : copyright(),
    },
  ];
  for (const f of files) {
    const dest = `${root}${f.path}`;
    await Deno.mkdir(dest.slice(0, dest.lastIndexOf("/")), { recursive: true });
    let data = typeof f.from === "string" ? undefined : f.from;
    if (f.gzip) data = await gzip(data ?? await Deno.readFile(f.from as string));
    if (data === undefined) await Deno.copyFile(f.from as string, dest);
    else await Deno.writeFile(dest, data);
    await Deno.chmod(dest, f.mode);
    bytes += (await Deno.stat(dest)).size;
    sums.push(f.path.slice(1));
  }
  // Directories 0755 whatever the umask.
  await run("/usr/bin/find", [root, "-type", "d", "-exec", "chmod", "0755", "{}", "+"]);
  const md5 = await run("/usr/bin/md5sum", sums.map((p) => `${root}/${p}`));
  await Deno.mkdir(`${root}/DEBIAN`, { recursive: true });
  await Deno.writeTextFile(
    `${root}/DEBIAN/md5sums`,
    md5.replaceAll(`${root}/`, ""),
  );
  const control = [
    `Package: ${spec.name}`,
    `Version: ${version}`,
    `Architecture: ${spec.arch}`,
    `Maintainer: ${MAINTAINER}`,
    `Installed-Size: ${Math.ceil(bytes / 1024)}`,
    ...(spec.depends.length > 0 ? [`Depends: ${spec.depends.join(", ")}`] : []),
    "Section: mail",
    "Priority: optional",
    `Description: ${spec.description}`,
    ...spec.long.map((l) => (l === "" ? " ." : ` ${l}`)),
    "",
  ].join("\n");
  await Deno.writeTextFile(`${root}/DEBIAN/control`, control);
  if (spec.conffiles !== undefined) {
    await Deno.writeTextFile(`${root}/DEBIAN/conffiles`, spec.conffiles.join("\n") + "\n");
  }
  for (const [name, body] of Object.entries(spec.scripts ?? {})) {
    await Deno.writeTextFile(`${root}/DEBIAN/${name}`, body, { mode: 0o755 });
    await Deno.chmod(`${root}/DEBIAN/${name}`, 0o755);
  }
  const deb = `${OUT}/${spec.name}_${version}_${spec.arch}.deb`;
  // RSENDMAIL_PKG_COMPRESS=gzip (the tests) trades size for a much faster build.
  const compress = Deno.env.get("RSENDMAIL_PKG_COMPRESS") === "gzip" ? "-Zgzip" : "-Zxz";
  await run("/usr/bin/dpkg-deb", ["--root-owner-group", compress, "--build", root, deb]);
  return deb;
}

/** Builds the three packages; returns the .deb paths. */
export async function buildPackages(): Promise<string[]> {
  const version = await readVersion();
  const pinned = (await Deno.readTextFile(".deno-version")).trim();
  const deno = `${DENO_SOURCE}/deno`;
  const reported = await run(deno, ["--version"]);
  if (!reported.startsWith(`deno ${pinned} `)) {
    throw new Error(`${deno} is not the pinned Deno ${pinned}: run scripts/bootstrap`);
  }
  await Deno.mkdir(OUT, { recursive: true });
  await Deno.mkdir(BUILD, { recursive: true });
  // The bundles for the packages, whose shebang names the packaged Deno.
  await run(deno, [
    "run",
    "--allow-read=.",
    "--allow-write=dist",
    `--allow-run=./${deno}`,
    "--allow-env",
    "scripts/build.ts",
    "--out",
    BUILD,
  ], { RSENDMAIL_DENO: RUNTIME_DENO });
  await writePages(`${BUILD}/man`);
  const runtimeDep = `${PACKAGE}-runtime (= ${version})`;
  const man = (name: string): Entry => ({
    path: `/usr/share/man/man8/${name}.8.gz`,
    mode: 0o644,
    from: `${BUILD}/man/${name}.8`,
    gzip: true,
  });
  const readme = (pkg: string): Entry => ({
    path: `/usr/share/doc/${pkg}/README.md.gz`,
    mode: 0o644,
    from: "README.md",
    gzip: true,
  });
  const lib = await Deno.readTextFile("scripts/service_account.sh");
  const specs: Spec[] = [
    {
      name: `${PACKAGE}-runtime`,
      arch: "amd64",
      depends: ["libc6 (>= 2.27)", "libgcc-s1"],
      description: `Deno ${pinned} runtime for rsendmail-ng`,
      long: [
        `The Deno ${pinned} JavaScript runtime that the rsendmail-ng programs`,
        `run on, at ${RUNTIME_DENO} (kept out of PATH). rsendmail and`,
        "sshsendmail start it with their own permission flags.",
      ],
      files: [{ path: RUNTIME_DENO, mode: 0o755, from: deno }],
    },
    {
      name: `${PACKAGE}-relay`,
      arch: "all",
      depends: [runtimeDep, "openssh-server", "default-mta | mail-transport-agent"],
      description: "restricted sendmail for SSH forced commands (relay side)",
      long: [
        "rsendmail runs on a mail relay as the forced command of an SSH key",
        '(restrict,command="/usr/sbin/rsendmail ..." in authorized_keys): it',
        'accepts only "send this message", checks its size and SHA-256, and',
        "hands it to the local sendmail with an argv it rebuilds itself. No",
        "shell, ever; a stolen key can send mail and do nothing else.",
        "",
        "Installs /usr/sbin/rsendmail (no clash with the rsendmail package's",
        "/usr/bin/rsendmail).",
      ],
      files: [
        { path: "/usr/sbin/rsendmail", mode: 0o755, from: `${BUILD}/rsendmail` },
        man("rsendmail"),
        readme(`${PACKAGE}-relay`),
      ],
    },
    {
      name: `${PACKAGE}-client`,
      arch: "all",
      depends: [runtimeDep, "openssh-client", "adduser | passwd", "util-linux"],
      description: "send mail through SSH to a relay running rsendmail",
      long: [
        "sshsendmail runs on a satellite (laptop, VM, container host) as a",
        "sendmail for cron, mutt, mailx, git send-email and PHP, as a Postfix",
        "pipe(8) transport or as a nullmailer module, and sends each message",
        "over SSH to a relay whose key runs rsendmail. Local users hand their",
        "mail to a delivery service (sshsendmail.service, enabled) that runs",
        "as the system account sshsendmail, owns the key and keeps the mail",
        "while the relay cannot be reached; `sshsendmail setup` makes the key,",
        "records the relay's host key and writes /etc/sshsendmail.conf.",
        "",
        "Installs /usr/sbin/sshsendmail (no clash with the rsendmail package's",
        "/usr/bin/sshsendmail).",
      ],
      files: [
        { path: "/usr/sbin/sshsendmail", mode: 0o755, from: `${BUILD}/sshsendmail` },
        man("sshsendmail"),
        readme(`${PACKAGE}-client`),
        { path: "/etc/sshsendmail.conf", mode: 0o644, from: text(EXAMPLE_CONFIG) },
        { path: `/lib/systemd/system/${UNIT}`, mode: 0o644, from: `contrib/systemd/${UNIT}` },
      ],
      conffiles: ["/etc/sshsendmail.conf"],
      scripts: {
        preinst: CLIENT_PREINST,
        postinst: CLIENT_POSTINST(lib),
        prerm: CLIENT_PRERM,
        postrm: CLIENT_POSTRM(lib),
      },
    },
  ];
  const debs: string[] = [];
  for (const spec of specs) debs.push(await build(spec, version));
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
