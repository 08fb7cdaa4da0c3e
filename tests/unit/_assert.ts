/**
 * Assertions shared by the unit tests: a refusal is checked by its class,
 * its sysexits code and its enhanced status code, never by absence alone.
 *
 * @module
 */

import { AssertionError, ok, strictEqual } from "node:assert/strict";
import { MailError } from "../../lib/shared/errors.ts";

/** Any MailError subclass. */
// deno-lint-ignore no-explicit-any
export type MailErrorClass = abstract new (...args: any[]) => MailError;

/**
 * Asserts that `fn` throws an instance of `errorClass` carrying `exitCode`
 * and, when given, the enhanced `status`. Returns the error.
 */
export function assertRefused(
  fn: () => unknown,
  errorClass: MailErrorClass,
  expected: { exitCode: number; status?: string },
): MailError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  if (thrown === undefined) {
    throw new AssertionError({ message: `Expected ${errorClass.name}, nothing was thrown` });
  }
  ok(
    thrown instanceof errorClass,
    `Expected ${errorClass.name}, got ${thrown instanceof Error ? thrown.name : String(thrown)}: ${
      thrown instanceof Error ? thrown.message : ""
    }`,
  );
  const err = thrown as MailError;
  strictEqual(err.exitCode, expected.exitCode, `exitCode of "${err.message}"`);
  if (expected.status !== undefined) {
    strictEqual(err.status, expected.status, `status of "${err.message}"`);
  }
  return err;
}
