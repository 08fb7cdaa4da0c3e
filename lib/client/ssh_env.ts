/**
 * The environment ssh runs with. Pure.
 *
 * @module
 */

/** The caller's variables ssh may see (its home, its name, its agent). */
const PASSED = ["HOME", "USER", "LOGNAME", "SSH_AUTH_SOCK"] as const;

/**
 * ssh's environment: a fixed PATH and locale, and the caller's own
 * variables ssh needs; nothing else of the caller's reaches it.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { sshEnv } from "./ssh_env.ts";
 * const env: Record<string, string> = { HOME: "/root", LD_PRELOAD: "/tmp/x.so" };
 * deepStrictEqual(sshEnv((name) => env[name]), { PATH: "/usr/bin:/bin", LANG: "C", HOME: "/root" });
 * ```
 */
export function sshEnv(lookup: (name: string) => string | undefined): Record<string, string> {
  const env: Record<string, string> = { PATH: "/usr/bin:/bin", LANG: "C" };
  for (const name of PASSED) {
    const v = lookup(name);
    if (v !== undefined) env[name] = v;
  }
  return env;
}
