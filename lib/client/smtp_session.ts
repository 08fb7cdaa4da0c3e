/**
 * The `-bs` SMTP dialogue (RFC 5321 server side) as a pure state machine:
 * it takes command lines and answers with reply lines, or asks the edge to
 * read a message (DATA) and later to send it. PHP frameworks (Symfony
 * Mailer, Laravel) speak it over `sendmail -bs`.
 *
 * @module
 */

import { isDeliveryTarget, isEnvelopeAddress } from "../shared/address.ts";
import { hasControl } from "../shared/words.ts";

/** Longest command line accepted (RFC 5321 4.5.3.1.4: 512 with CRLF). */
export const MAX_COMMAND_LINE = 512;
/** Most commands in one session. */
export const MAX_COMMANDS = 5000;

/** Session settings. */
export interface SmtpOptions {
  hostname: string;
  maxSize: number;
  maxRecipients: number;
}

/** What the edge must do after a command. */
export type SmtpAction =
  | { kind: "reply"; lines: string[] }
  | { kind: "data"; lines: string[] }
  | { kind: "quit"; lines: string[] };

/** The envelope of a message being received. */
export interface SmtpEnvelope {
  sender: string;
  recipients: string[];
  /** Size the client declared with MAIL FROM SIZE=, if any. */
  declaredSize: number | undefined;
}

const MAIL_REGEXP = /^MAIL FROM:\s?<([^<>]*)>((?: [A-Za-z0-9-]+(?:=\S+)?)*)$/i;
const RCPT_REGEXP = /^RCPT TO:\s?<([^<>]+)>((?: [A-Za-z0-9-]+(?:=\S+)?)*)$/i;

function reply(...lines: string[]): SmtpAction {
  return { kind: "reply", lines };
}

/** One SMTP session's state. */
export class SmtpSession {
  #o: SmtpOptions;
  #envelope: SmtpEnvelope | undefined;
  #commands = 0;

  /** @param options hostname, size and recipient limits. */
  constructor(options: SmtpOptions) {
    this.#o = options;
  }

  /** The 220 greeting. */
  greeting(): string {
    return `220 ${this.#o.hostname} ESMTP sshsendmail`;
  }

  /** The envelope collected so far (for the edge, after DATA). */
  get envelope(): SmtpEnvelope | undefined {
    return this.#envelope;
  }

  /** Ends the current transaction (after a message was handled). */
  reset(): void {
    this.#envelope = undefined;
  }

  /** Answers one command line (CRLF or LF already stripped). */
  onLine(raw: string): SmtpAction {
    if (++this.#commands > MAX_COMMANDS) {
      return { kind: "quit", lines: ["421 4.7.0 too many commands, closing"] };
    }
    if (raw.length > MAX_COMMAND_LINE) return reply("500 5.5.2 line too long");
    if (hasControl(raw)) return reply("500 5.5.2 control character in command");
    const line = raw.trimEnd();
    const verb = line.split(" ", 1)[0]!.toUpperCase();
    switch (verb) {
      case "EHLO":
        if (line.length < 6) return reply("501 5.5.4 EHLO needs a domain");
        this.#envelope = undefined;
        return reply(
          `250-${this.#o.hostname}`,
          "250-PIPELINING",
          `250-SIZE ${this.#o.maxSize}`,
          "250-8BITMIME",
          "250 ENHANCEDSTATUSCODES",
        );
      case "HELO":
        if (line.length < 6) return reply("501 5.5.4 HELO needs a domain");
        this.#envelope = undefined;
        return reply(`250 ${this.#o.hostname}`);
      case "MAIL":
        return this.#mail(line);
      case "RCPT":
        return this.#rcpt(line);
      case "DATA":
        if (line.toUpperCase() !== "DATA") return reply("501 5.5.4 DATA takes no argument");
        if (!this.#envelope) return reply("503 5.5.1 need MAIL first");
        if (this.#envelope.recipients.length === 0) return reply("554 5.5.1 no valid recipients");
        return { kind: "data", lines: ["354 End data with <CR><LF>.<CR><LF>"] };
      case "RSET":
        this.#envelope = undefined;
        return reply("250 2.0.0 Ok");
      case "NOOP":
        return reply("250 2.0.0 Ok");
      case "QUIT":
        return { kind: "quit", lines: ["221 2.0.0 Bye"] };
      case "HELP":
        return reply("214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT HELP");
      case "VRFY":
      case "EXPN":
        return reply(`502 5.5.1 ${verb} not available`);
      case "STARTTLS":
      case "AUTH":
      case "BDAT":
      case "ETRN":
        return reply(`502 5.5.1 ${verb} not implemented`);
      default:
        return reply("500 5.5.2 command not recognized");
    }
  }

  #mail(line: string): SmtpAction {
    if (this.#envelope) return reply("503 5.5.1 nested MAIL command");
    const m = MAIL_REGEXP.exec(line);
    if (!m) return reply("501 5.5.4 syntax: MAIL FROM:<address>");
    const sender = m[1]!;
    if (sender !== "" && !isEnvelopeAddress(sender)) return reply("501 5.1.7 bad sender address");
    let declaredSize: number | undefined;
    for (const param of m[2]!.trim().split(" ").filter(Boolean)) {
      // The whole value after the first "=" (split("=", 2) would drop "=2" from "SIZE=1=2").
      const eq = param.indexOf("=");
      const key = eq < 0 ? param : param.slice(0, eq);
      const value = eq < 0 ? undefined : param.slice(eq + 1);
      switch (key.toUpperCase()) {
        case "SIZE":
          if (!value || !/^[0-9]{1,15}$/.test(value)) return reply("501 5.5.4 bad SIZE");
          declaredSize = Number(value);
          if (declaredSize > this.#o.maxSize) return reply("552 5.3.4 message too big");
          break;
        case "BODY":
          if (!/^(7BIT|8BITMIME)$/i.test(value ?? "")) return reply("501 5.5.4 bad BODY");
          break;
        default:
          return reply("555 5.5.4 unsupported MAIL parameter");
      }
    }
    this.#envelope = { sender, recipients: [], declaredSize };
    return reply("250 2.1.0 Ok");
  }

  #rcpt(line: string): SmtpAction {
    if (!this.#envelope) return reply("503 5.5.1 need MAIL first");
    const m = RCPT_REGEXP.exec(line);
    if (!m) return reply("501 5.5.4 syntax: RCPT TO:<address>");
    if (m[2]!.trim() !== "") return reply("555 5.5.4 unsupported RCPT parameter");
    const rcpt = m[1]!;
    if (!isEnvelopeAddress(rcpt)) return reply("501 5.1.3 bad recipient address");
    // Refused here, as the relay would, instead of failing the whole message at DATA.
    if (isDeliveryTarget(rcpt)) {
      return reply("550 5.1.3 program, file and include recipients are not allowed");
    }
    if (this.#envelope.recipients.length >= this.#o.maxRecipients) {
      return reply("452 4.5.3 too many recipients");
    }
    this.#envelope.recipients.push(rcpt);
    return reply("250 2.1.5 Ok");
  }
}

/**
 * Undoes SMTP transparency on one DATA line: strips CR LF or LF, removes one
 * leading dot. Returns undefined for the terminating `.` line.
 */
export function unstuffLine(line: Uint8Array): Uint8Array | undefined {
  let end = line.length;
  if (end > 0 && line[end - 1] === 0x0a) end--;
  if (end > 0 && line[end - 1] === 0x0d) end--;
  const body = line.subarray(0, end);
  if (body.length === 1 && body[0] === 0x2e) return undefined;
  return body[0] === 0x2e ? body.subarray(1) : body;
}
