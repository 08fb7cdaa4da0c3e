/**
 * sshsendmail: the satellite side. Placeholder until the client issue lands.
 *
 * @module
 */

if (import.meta.main) {
  await Deno.stderr.write(new TextEncoder().encode("4.3.5 sshsendmail: not implemented yet\n"));
  Deno.exit(75);
}
