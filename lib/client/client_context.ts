/**
 * What sshsendmail's mode handlers need from the world, as one object the
 * edge (client.ts) builds from Deno: the command line and environment,
 * the standard streams, who and where this process is, the clock and
 * randomness, the files it reads, the programs it spawns and the signals
 * that stop the service; and the shape of a mode's handler. Types only.
 * Pure.
 *
 * @module
 */

import type { ClientArgs } from "./client_args.ts";
import type { ClientSettings } from "./client_config.ts";
import type { ByteReader } from "../shared/spool_io.ts";

/** stdin: bytes, and whether a person is typing them. */
export interface ClientInput extends ByteReader {
  isTerminal(): boolean;
}

/** stdout or stderr. */
export interface ClientOutput {
  write(p: Uint8Array): Promise<number>;
  writeSync(p: Uint8Array): number;
  isTerminal(): boolean;
}

/** What {@link ClientContext.stat} reports of a path. */
export interface ClientFileInfo {
  isDirectory: boolean;
  mtime: Date | null;
}

/** The absolute paths of the programs sshsendmail spawns (never a shell, never $PATH). */
export interface ClientSpawnPaths {
  ssh: string;
  /** Streams nullmailer's fd 3, which Deno cannot open itself. */
  cat: string;
  /** The service's syslog writer. */
  logger: string;
}

/** The effects a mode handler may use. */
export interface ClientContext {
  /** The words after the program's name. */
  args: readonly string[];
  /** The path the program was invoked as (a symlink keeps its own name). */
  invokedPath: string;
  /** One environment variable. */
  env(name: string): string | undefined;
  stdin: ClientInput;
  stdout: ClientOutput;
  stderr: ClientOutput;
  hostname(): string;
  /** This process's uid (-1 where the system has none). */
  uid(): number;
  pid: number;
  /** The clock, ms since the epoch. */
  now(): number;
  /** A random UUID (message ids). */
  uuid(): string;
  /** `n` random bytes. */
  randomBytes(n: number): Uint8Array;
  readTextFile(path: string): Promise<string>;
  /** Follows symlinks; rejects when the path is missing. */
  stat(path: string): Promise<ClientFileInfo>;
  /** Calls `tick` every `ms` until the returned function is called. */
  every(ms: number, tick: () => void): () => void;
  paths: ClientSpawnPaths;
  /** Calls `listener` on `signal` (the service stops on SIGTERM and SIGINT). */
  addSignalListener(signal: "SIGTERM" | "SIGINT", listener: () => void): void;
}

/** Runs one mode: the parsed command line and the settings in force; returns the exit code. */
export type ModeHandler = (
  ctx: ClientContext,
  args: ClientArgs,
  settings: ClientSettings,
) => Promise<number>;
