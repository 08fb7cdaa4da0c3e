/**
 * Reading sshsendmail's config file for a mode handler.
 *
 * @module
 */

import type { ClientArgs } from "./client_args.ts";
import type { ClientContext } from "./client_context.ts";
import {
  type ClientSettings,
  ConfigError,
  DEFAULT_CONFIG_FILE,
  defaultSettings,
  parseConfigFile,
} from "./client_config.ts";

/** The config file: `--config`, else $SSHSENDMAIL_CONFIG, else the default. */
export function configPath(ctx: ClientContext, file: string | undefined): string {
  return file ?? ctx.env("SSHSENDMAIL_CONFIG") ?? DEFAULT_CONFIG_FILE;
}

/**
 * Reads the config file. Submitting to the service and asking it need no
 * relay, so a missing default file means the defaults; sending directly
 * or serving needs a host.
 */
export async function loadConfig(
  ctx: ClientContext,
  file: string | undefined,
  needHost: boolean,
): Promise<ClientSettings> {
  const explicit = file ?? ctx.env("SSHSENDMAIL_CONFIG");
  const path = explicit ?? DEFAULT_CONFIG_FILE;
  let text: string;
  try {
    text = await ctx.readTextFile(path);
  } catch {
    if (explicit === undefined && !needHost) return defaultSettings();
    throw new ConfigError(`no relay configured: cannot read ${path}`);
  }
  const settings = parseConfigFile(text, path);
  if ((needHost || !settings.queue) && settings.hosts.length === 0) {
    throw new ConfigError(`no host in ${path}`);
  }
  return settings;
}

/**
 * The settings a command runs with: its options' when they name a host
 * (a Postfix pipe) or it is nullmailer's (its options come on stdin), else
 * the config file's (`--test` needs a host there).
 */
export async function settingsFor(ctx: ClientContext, args: ClientArgs): Promise<ClientSettings> {
  if (args.mta === "nullmailer" || args.configured) return args.settings;
  return await loadConfig(ctx, args.configFile, args.command === "test");
}
