/**
 * A build step for the bundles: every top-level function declaration
 * becomes `var NAME = (function NAME(…) {…});`, all of them moved to the
 * bundle's start, in their order.
 *
 * Why: V8 compiles a function lazily, on its first call, unless the
 * function is written inside parentheses (its "likely called" hint); and
 * Deno stores a module's V8 code cache as soon as the module is compiled,
 * before it runs. So a declared function's bytecode is never cached: every
 * run of the relay and the client compiled each function it called anew.
 * Parenthesised, the functions are compiled with the module and kept in
 * Deno's code cache; a later run reads their bytecode instead (issue 15,
 * docs/benchmarks.md).
 *
 * Moving them to the start keeps what declarations mean: each name is bound
 * to its function before any other statement of the bundle runs.
 *
 * @module
 */

/** The part of an ESTree node this step reads (acorn's, with offsets). */
interface Node {
  type: string;
  start: number;
  end: number;
  id?: { name: string } | null;
}

/** A parser of a whole ES module into its top-level statements. */
export type ParseModule = (source: string) => { body: readonly Node[] };

/** The bundle with its top-level function declarations made eager (see the module doc). */
export function eagerFunctions(source: string, parse: ParseModule): string {
  const declared = parse(source).body.filter((n) => n.type === "FunctionDeclaration");
  if (declared.length === 0) return source;
  const head: string[] = [];
  const rest: string[] = [];
  let at = 0;
  for (const fn of declared) {
    const name = fn.id?.name;
    if (name === undefined) throw new Error("a function declaration without a name");
    head.push(`var ${name} = (${source.slice(fn.start, fn.end)});\n`);
    rest.push(source.slice(at, fn.start));
    at = fn.end;
  }
  rest.push(source.slice(at));
  return head.join("") + rest.join("");
}
