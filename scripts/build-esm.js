// Writes dist/index.mjs and dist/bullmq.mjs: ES modules that re-export the
// CommonJS build by name, so `import` and `require` share one copy (one set of
// error classes).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dist = path.join(__dirname, '..', 'dist');
for (const entry of ['index', 'bullmq']) {
  const names = Object.keys(require(path.join(dist, `${entry}.js`))).filter((n) => n !== '__esModule' && n !== 'default');
  const lines = [
    `import cjs from './${entry}.js';`,
    `export const { ${names.join(', ')} } = cjs;`,
    'export default cjs;',
    '',
  ];
  fs.writeFileSync(path.join(dist, `${entry}.mjs`), lines.join('\n'));
}
