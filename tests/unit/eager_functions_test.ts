/**
 * The build's eager-functions step (scripts/eager_functions.ts): each
 * top-level function declaration becomes a parenthesised expression bound
 * at the bundle's start, and the bundle still means what it meant. Each case
 * runs the result as a module (a data: URL, no permission needed) and
 * compares what it exports with the original's.
 */
import { deepStrictEqual, ok, strictEqual } from "node:assert/strict";
import { parse } from "npm:acorn@8.19.0";
import { eagerFunctions } from "../../scripts/eager_functions.ts";

function parseModule(source: string) {
  return parse(source, { ecmaVersion: "latest", sourceType: "module" });
}

/** What a module exports as `result` (awaited). */
async function resultOf(source: string): Promise<unknown> {
  const url = `data:text/javascript;base64,${btoa(source)}`;
  return await (await import(url)).result;
}

/** The top-level function declarations left in a module. */
function declarations(source: string): string[] {
  return parseModule(source).body.filter((n) => n.type === "FunctionDeclaration")
    .map((n) => n.type === "FunctionDeclaration" ? n.id.name : "");
}

const CASES: { name: string; source: string; eager: string[] }[] = [
  {
    name: "a call before the declaration (hoisting kept)",
    source:
      "const x = twice(21);\nfunction twice(n) {\n  return n * 2;\n}\nexport const result = x;",
    eager: ["twice"],
  },
  {
    name: "functions calling each other, declared in any order",
    source: [
      "export const result = [odd(7), even(7)];",
      "function even(n) { return n === 0 ? true : odd(n - 1); }",
      "function odd(n) { return n === 0 ? false : even(n - 1); }",
    ].join("\n"),
    eager: ["even", "odd"],
  },
  {
    name: "async and generator functions",
    source: [
      "async function later(v) { await null; return v; }",
      "function* count(n) { for (let i = 0; i < n; i++) yield i; }",
      "export const result = [await later('a'), [...count(3)]];",
    ].join("\n"),
    eager: ["later", "count"],
  },
  {
    name: "nested declarations, exported functions and function text in strings stay",
    source: [
      "function outer() {\n  function inner() { return 'in'; }\n  return inner();\n}",
      "export function shown() { return 'shown'; }",
      "const text = `function fake() {\n}\n`;",
      "export const result = [outer(), shown(), text];",
    ].join("\n"),
    eager: ["outer"],
  },
  {
    name: "a name rebound later keeps the later value, as with a declaration",
    source: "function f() { return 1; }\nf = () => 2;\nexport const result = f();",
    eager: ["f"],
  },
  {
    name: "no function: the text unchanged",
    source: "const a = [1, 2].map((n) => n + 1);\nexport const result = a;",
    eager: [],
  },
];

for (const c of CASES) {
  Deno.test(`eagerFunctions: ${c.name}`, async () => {
    const out = eagerFunctions(c.source, parseModule);
    deepStrictEqual(await resultOf(out), await resultOf(c.source));
    const left = declarations(out);
    for (const name of c.eager) {
      ok(!left.includes(name), `${name} is still a declaration`);
      ok(out.includes(`var ${name} = (`), `${name} is not parenthesised`);
    }
    if (c.eager.length === 0) strictEqual(out, c.source);
  });
}

Deno.test("eagerFunctions: every eager function is bound before the first other statement", () => {
  const source = "let a = 1;\nfunction f() { return a; }\na = 2;\nfunction g() { return f(); }\n";
  const out = eagerFunctions(source, parseModule);
  const body = parseModule(out).body;
  deepStrictEqual(body.slice(0, 2).map((n) => n.type), [
    "VariableDeclaration",
    "VariableDeclaration",
  ]);
  strictEqual(out.slice(body[2]!.start).trimEnd(), "let a = 1;\n\na = 2;");
});
