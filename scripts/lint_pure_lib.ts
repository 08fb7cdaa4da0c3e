/**
 * Lint plugin: pure lib/ modules must not touch `Deno.*`. Only the edges
 * (server.ts, client.ts) and the effectful modules listed here may.
 *
 * @module
 */

/** lib/ modules allowed to perform I/O. */
const EFFECTFUL = [
  "/lib/pipeline.ts",
  "/lib/syslog.ts",
  "/lib/dedup.ts",
  "/lib/queue.ts",
  "/lib/setup.ts",
  "/lib/batch_channel.ts",
  "/lib/smtp_server.ts",
  "/lib/limits.ts",
  "/lib/service.ts",
  "/lib/submit.ts",
  "/lib/migrate.ts",
  "/lib/prepare_local.ts",
  "/lib/spool_init.ts",
];

const plugin: Deno.lint.Plugin = {
  name: "rsendmail",
  rules: {
    "pure-lib": {
      create(context) {
        const file = context.filename.replaceAll("\\", "/");
        const pure = file.includes("/lib/") && !EFFECTFUL.some((e) => file.endsWith(e));
        if (!pure) return {};
        return {
          'MemberExpression[object.name="Deno"]'(node: Deno.lint.MemberExpression) {
            context.report({
              node,
              message: "Deno.* in a pure lib/ module: move the effect to an edge module",
            });
          },
        };
      },
    },
  },
};
export default plugin;
