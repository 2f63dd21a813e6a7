// Usage: node validate.mjs FILE... ; exits 1 if any document has an error-level diagnostic.
import { Parser } from '@asyncapi/parser';
import { readFileSync } from 'node:fs';
const parser = new Parser();
let failed = 0;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(readFileSync(file, 'utf8'));
  const errors = diagnostics.filter((d) => d.severity === 0);
  console.log(`${file}: ${errors.length} error(s), ${diagnostics.length - errors.length} other diagnostic(s)`);
  for (const e of errors) console.log(`  ${e.code}: ${e.message} at ${e.path.join('.')}`);
  if (errors.length || !document) failed++;
}
process.exit(failed ? 1 : 0);
