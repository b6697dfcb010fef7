// Lex Markdown with the Prefect UI's own renderer (marked, as bundled in the installed
// prefect package) and print what a reader sees: the token tree, with text as shown.
// Usage: node ui_markdown.js ASSETS_DIR < texts.json   (a JSON list of Markdown strings)
"use strict";
const fs = require("fs");
const path = require("path");
const vm = require("vm");

const dir = process.argv[2];
let worker = null;
for (const name of fs.readdirSync(dir)) {
  if (!name.endsWith(".js")) continue;
  const src = fs.readFileSync(path.join(dir, name), "utf8");
  const at = src.indexOf("gfm:!0,breaks:!0");
  if (at < 0) continue;
  const start = src.lastIndexOf("='(function(){", at);
  const end = src.indexOf("',", at);
  worker = vm.runInNewContext(src.slice(start + 1, end + 1));
  break;
}
if (worker === null) {
  console.error("no Markdown worker found in " + dir);
  process.exit(2);
}
let tokens = null;
const self = { postMessage: (m) => { tokens = m.tokens; } };
vm.runInNewContext(worker, { self });
// What the UI's PMarkdownRenderer does with text and escape tokens before showing them.
const shown = (t) => t.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"')
  .replace(/&#39;/g, "'").replace(/&amp;/g, "&");
const simplify = (tok) => {
  const out = { type: tok.type };
  if (tok.type === "text" || tok.type === "escape" || tok.type === "codespan") {
    if (!tok.tokens) out.text = shown(tok.text);
  }
  if (tok.type === "html") out.text = tok.text;
  if (tok.type === "link" || tok.type === "image") out.href = tok.href;
  if (tok.tokens) out.tokens = tok.tokens.map(simplify);
  if (tok.items) out.items = tok.items.map(simplify);
  if (tok.type === "table") {
    out.header = tok.header.map((c) => c.tokens.map(simplify));
    out.rows = tok.rows.map((r) => r.map((c) => c.tokens.map(simplify)));
  }
  return out;
};
const texts = JSON.parse(fs.readFileSync(0, "utf8"));
const result = texts.map((text, id) => {
  self.onmessage({ data: { id, text } });
  return tokens.map(simplify);
});
process.stdout.write(JSON.stringify(result));
