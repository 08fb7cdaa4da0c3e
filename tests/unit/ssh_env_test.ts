import { deepStrictEqual } from "node:assert/strict";
import { sshEnv } from "../../lib/client/ssh_env.ts";

Deno.test("sshEnv() passes no caller variable that changes ssh's or a library's behaviour", () => {
  const caller: Record<string, string> = {
    HOME: "/home/a",
    USER: "a",
    LOGNAME: "a",
    SSH_AUTH_SOCK: "/run/a/agent",
    LD_PRELOAD: "/tmp/evil.so",
    PATH: "/tmp/evil:/usr/bin",
    SSH_ASKPASS: "/tmp/evil",
    LANG: "xx_XX.evil",
  };
  deepStrictEqual(sshEnv((name) => caller[name]), {
    PATH: "/usr/bin:/bin",
    LANG: "C",
    HOME: "/home/a",
    USER: "a",
    LOGNAME: "a",
    SSH_AUTH_SOCK: "/run/a/agent",
  });
});

Deno.test("sshEnv() leaves out what the caller does not have", () => {
  deepStrictEqual(sshEnv(() => undefined), { PATH: "/usr/bin:/bin", LANG: "C" });
});
