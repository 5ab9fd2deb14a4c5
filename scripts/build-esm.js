// Writes dist/index.mjs: an ES module that re-exports the CommonJS build by
// name, so `import` and `require` share one copy (one set of error classes).
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const dist = path.join(__dirname, '..', 'dist');
const names = Object.keys(require(path.join(dist, 'index.js'))).filter((n) => n !== '__esModule' && n !== 'default');
const lines = [
  "import cjs from './index.js';",
  `export const { ${names.join(', ')} } = cjs;`,
  'export default cjs;',
  '',
];
fs.writeFileSync(path.join(dist, 'index.mjs'), lines.join('\n'));
