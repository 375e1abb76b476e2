// Entry point of the bundled Node runner (see ../bundle.py): `node -e <bundle> -- [options]`.
'use strict';

const P = require('gvshim:protocol');
const { Runner } = require('gvshim:runner');

// Everything a runner diagnostic or a stray console.log prints goes to stderr: stdout carries frames only.
console.log = console.info = console.debug = console.error;
let opts;
try {
  opts = P.parseOptions(process.argv.slice(1));
} catch (e) {
  P.diag(e.message);
  process.exit(2);
}
process.on('SIGPIPE', () => {});
new Runner(opts).start();
