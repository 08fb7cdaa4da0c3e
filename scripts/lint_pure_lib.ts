/**
 * Lint plugin: the house rules of lib/, by path (no list of names to go
 * stale).
 *
 * - A file whose name ends in `_io.ts` is an effect file; every other
 *   file under lib/ is pure: no `Deno.*`, no clock (`Date.now()`,
 *   `new Date()` without an argument, `performance.now()`), no randomness
 *   (`crypto.getRandomValues`, `crypto.randomUUID`, `Math.random`), no
 *   timers (`setTimeout`, `setInterval`, `AbortSignal.timeout`). Pure
 *   files import only pure files.
 * - Import direction: lib/shared/ imports neither lib/relay/ nor
 *   lib/client/; lib/relay/ and lib/client/ never import each other.
 *
 * @module
 */

/** The role a lib/ file belongs to, from its path. */
function roleOf(file: string): "shared" | "relay" | "client" | undefined {
  const m = /\/lib\/(shared|relay|client)\//.exec(file);
  return m ? m[1] as "shared" | "relay" | "client" : undefined;
}

/** Which roles each role may import. */
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  shared: ["shared"],
  relay: ["shared", "relay"],
  client: ["shared", "client"],
};

const plugin: Deno.lint.Plugin = {
  name: "rsendmail",
  rules: {
    "pure-lib": {
      create(context) {
        const file = context.filename.replaceAll("\\", "/");
        const pure = file.includes("/lib/") && !file.endsWith("_io.ts");
        if (!pure) return {};
        const report = (node: Deno.lint.Node, what: string) =>
          context.report({
            node,
            message: `${what} in a pure lib/ module: move the effect to an _io.ts file`,
          });
        return {
          'MemberExpression[object.name="Deno"]'(node: Deno.lint.MemberExpression) {
            report(node, "Deno.*");
          },
          'MemberExpression[object.name="Date"][property.name="now"]'(node: Deno.lint.Node) {
            report(node, "the clock (Date.now)");
          },
          'MemberExpression[object.name="performance"][property.name="now"]'(
            node: Deno.lint.Node,
          ) {
            report(node, "the clock (performance.now)");
          },
          'NewExpression[callee.name="Date"]'(node: Deno.lint.NewExpression) {
            if (node.arguments.length === 0) report(node, "the clock (new Date())");
          },
          'MemberExpression[object.name="crypto"][property.name=/^(getRandomValues|randomUUID)$/]'(
            node: Deno.lint.Node,
          ) {
            report(node, "randomness (crypto)");
          },
          'MemberExpression[object.name="Math"][property.name="random"]'(node: Deno.lint.Node) {
            report(node, "randomness (Math.random)");
          },
          "CallExpression[callee.name=/^(setTimeout|setInterval)$/]"(node: Deno.lint.Node) {
            report(node, "a timer");
          },
          'MemberExpression[object.name="AbortSignal"][property.name="timeout"]'(
            node: Deno.lint.Node,
          ) {
            report(node, "a timer (AbortSignal.timeout)");
          },
          ImportDeclaration(node: Deno.lint.ImportDeclaration) {
            const source = String(node.source.value);
            // A type-only import runs nothing.
            if (node.importKind === "type") return;
            if (source.startsWith(".") && source.endsWith("_io.ts")) {
              report(node, `an import of an effect file (${source})`);
            }
          },
        };
      },
    },
    "import-direction": {
      create(context) {
        const file = context.filename.replaceAll("\\", "/");
        const role = roleOf(file);
        if (role === undefined) return {};
        return {
          ImportDeclaration(node: Deno.lint.ImportDeclaration) {
            const source = String(node.source.value);
            if (!source.startsWith(".")) return;
            const dir = file.slice(0, file.lastIndexOf("/"));
            const target = new URL(source, `file://${dir}/`).pathname;
            const to = roleOf(target);
            if (to !== undefined && !MAY_IMPORT[role]!.includes(to)) {
              context.report({
                node,
                message: `lib/${role}/ must not import lib/${to}/ (${source})`,
              });
            }
          },
        };
      },
    },
  },
};
export default plugin;
