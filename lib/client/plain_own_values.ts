/**
 * sshsendmail's own options in their plain forms, read without node:util.
 *
 * node:util's parseArgs reads the client's own options; loading it starts
 * Deno's Node layer, 10–18 ms of a client start here. A Postfix pipe line
 * (`--host ${nexthop} --identity … --queue-id ${queue_id} -f …`) passes own
 * options on every message, before ssh can start. This module gives the
 * values parseArgs would give for the plain forms only, and declines the
 * rest, which parseArgs then parses (it alone reports errors).
 * tests/unit/plain_own_values_test.ts holds it to parseArgs on random
 * command lines. Pure.
 *
 * @module
 */

import { OWN_OPTIONS } from "./split_client_argv.ts";

/** What node:util's parseArgs gives for {@link OWN_OPTIONS} (its `values`). */
export type PlainOwnValues = {
  -readonly [K in keyof typeof OWN_OPTIONS]?: (typeof OWN_OPTIONS)[K] extends { type: "boolean" }
    ? boolean
    : (typeof OWN_OPTIONS)[K] extends { multiple: true } ? string[]
    : string;
};

/**
 * The values of `own` (the own words of a split command line) when every
 * word is plain: `--name` for a boolean option, `--name value` for a string
 * option whose value is not option-like (option-like: two characters or
 * more, the first `-`; a lone `-` is a value). Undefined for any other
 * form (`--name=value`, an unknown name, a value missing or option-like):
 * parseArgs must decide. Like parseArgs, the last value of a single option
 * wins, a multiple option collects them, and the object has no prototype.
 *
 * @example Usage
 * ```ts
 * import { deepStrictEqual, equal } from "node:assert/strict";
 * import { plainOwnValues } from "./plain_own_values.ts";
 * deepStrictEqual(
 *   { ...plainOwnValues(["--host", "relay.example", "--queue-id", "4Xk2", "--reuse"]) },
 *   { host: ["relay.example"], "queue-id": "4Xk2", reuse: true },
 * );
 * equal(plainOwnValues(["--port=2222"]), undefined);
 * equal(plainOwnValues(["--port", "-p"]), undefined);
 * ```
 */
export function plainOwnValues(own: readonly string[]): PlainOwnValues | undefined {
  const values: Record<string, string | boolean | string[]> = Object.create(null);
  for (let i = 0; i < own.length; i++) {
    const word = own[i]!;
    const name = word.slice(2);
    if (!word.startsWith("--") || !Object.hasOwn(OWN_OPTIONS, name)) return undefined;
    const rule: { type: string; multiple?: boolean } =
      OWN_OPTIONS[name as keyof typeof OWN_OPTIONS];
    if (rule.type === "boolean") {
      values[name] = true;
      continue;
    }
    const value = own[++i];
    if (value === undefined || (value.length > 1 && value.startsWith("-"))) return undefined;
    if (rule.multiple) {
      const list = values[name];
      values[name] = Array.isArray(list) ? [...list, value] : [value];
    } else {
      values[name] = value;
    }
  }
  return values as PlainOwnValues;
}
