"""Snippets the runner tests run, by scenario, in Python and in JavaScript (test_runners.py)."""

PY_SNIPPETS = {
    "look": ("import os\n"
             "def main():\n"
             "    pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
             "    tmp = {d: sorted(os.listdir(d)) for d in ('/tmp', '/var/tmp', '/dev/shm') if os.path.isdir(d)}\n"
             "    return {'pids': pids, 'self': os.getpid(), 'uid': os.getuid(), 'groups': os.getgroups(),\n"
             "            'cwd': os.getcwd(), 'umask': os.umask(0o77), 'tmp': tmp, 'cwd_files': sorted(os.listdir('.'))}\n"),
    "leave": ("import os\n"
              "for d in ('/tmp', '/var/tmp', '/dev/shm', '.'):\n"
              "    if os.path.isdir(d):\n"
              "        open(os.path.join(d, 'gvx-left-behind'), 'w').write('x')\n"),
    "find": ("import os\n"
             "def main():\n"
             "    return [d for d in ('/tmp', '/var/tmp', '/dev/shm', '.')\n"
             "            if os.path.exists(os.path.join(d, 'gvx-left-behind'))]\n"),
    "hold_pid": ("import os, time\n"
                 "print(os.getpid(), flush=True)\n"
                 "open('/tmp/concurrent-secret', 'w').write('mine')\n"
                 "time.sleep(60)\n"),
    "main_sum": "def main(a, b):\n    return {'sum': a + b}\n",
    "script_print": "print('hello from the snippet')\n",
    "syntax_error": "def broken(:\n    pass\n",
    "exception": "def f():\n    raise ValueError('boom-7')\nf()\n",
    "exit3": "import sys\nsys.exit(3)\n",
    "bad_result": "def main():\n    return object()\n",
    "stdin_env": ("import os, sys\n"
                  "def main():\n"
                  "    data = sys.stdin.buffer.read()\n"
                  "    return {'stdin_len': len(data), 'greeting': os.environ.get('GREETING'), 'uid': os.getuid()}\n"),
    "artifacts": ("import os\n"
                  "with open('artifacts/out.txt', 'w') as f:\n    f.write('artifact-data')\n"
                  "os.symlink('/etc/passwd', 'artifacts/link')\n"
                  "os.mkdir('artifacts/sub')\n"),
    "loop": "while True:\n    pass\n",
    "memory_bomb": "blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))\n",
    "flood": "import sys\nwhile True:\n    sys.stdout.write('x' * 999 + '\\n')\n",
    "big_output": "import sys\nsys.stdout.buffer.write(b'x' * (50 << 20))\n",
    # A lone surrogate in a record, and a file name that is not UTF-8 (Python reads it with surrogateescape).
    "lone_surrogates": ("import os\nos.write(3, b'{\"kind\":\"result\",\"json\":\"\\\\udc00\"}\\n')\n"
                        "open(b'artifacts/\\xff', 'w').write('x')\n"),
    # 25 MiB of one unfinished line on the records channel (fd 3), then 84 MB more in chunks that mention "exit".
    "records_flood": ("import os\nos.write(3, b'\\n' + b'x' * (25 << 20))\nc = b'\"exit\"' * 10000\n"
                      "for _ in range(1400):\n    os.write(3, c)\n"),
    "fork_bomb": ("import os, sys, time\n"
                  "n = 0\n"
                  "while True:\n"
                  "    try:\n"
                  "        pid = os.fork()\n"
                  "    except OSError as e:\n"
                  "        print('process limit reached after', n, 'forks:', e, flush=True)\n"
                  "        break\n"
                  "    if pid == 0:\n"
                  "        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', 'MARKER'])\n"
                  "    n += 1\n"
                  "while True:\n"
                  "    try:\n"
                  "        os.fork()\n"  # the classic bomb: every child forks again until the limit holds them
                  "    except OSError:\n"
                  "        time.sleep(0.01)\n"),
    "background": ("import subprocess, sys\n"
                   "def main():\n"
                   "    p = subprocess.Popen([sys.executable, '-c',\n"
                   "                          'import sys, time; print(1, flush=True); time.sleep(60)', 'MARKER'],\n"
                   "                         stdout=subprocess.PIPE)\n"
                   "    p.stdout.readline()\n"
                   "    return 'child running' if p.poll() is None else 'child died'\n"),
    "hold_secret": ("import os, time\n"
                    "with open('secret.txt', 'w') as f:\n    f.write('top-secret')\n"
                    "print(os.path.abspath('secret.txt'), flush=True)\n"
                    "time.sleep(60)\n"),
    "peek": ("import os\n"
             "def main(path):\n"
             "    try:\n        content = open(path).read()\n"
             "    except OSError as e:\n        content = 'error: %s' % e\n"
             "    try:\n        listed = os.listdir(os.path.dirname(os.path.dirname(path)))\n"
             "        listed = [d for d in listed if d not in os.getcwd()]\n"
             "    except OSError:\n        listed = []\n"
             "    return {'content': content, 'listed': bool(listed)}\n"),
    "sleep_main": "import time\ndef main(n):\n    time.sleep(1)\n    return n\n",
    "overlap_main": "import time\ndef main(n):\n    t0 = time.time()\n    time.sleep(3)\n    return [n, t0, time.time()]\n",
    "connect": ("import socket\n"
                "def main(port):\n"
                "    try:\n"
                "        socket.create_connection(('127.0.0.1', port), timeout=2).close()\n"
                "        return {'connected': True}\n"
                "    except OSError as e:\n"
                "        return {'connected': False, 'error': str(e)}\n"),
    "hostile": ("import os\n"
                "for fd in range(3, 256):\n"
                "    try:\n        os.write(fd, b'\\xff\\xff\\xff\\xffgarbage')\n"
                "    except OSError:\n        pass\n"
                "os.write(1, b'\\x00\\x00\\x00\\x05{}{}{')\n"
                "os.kill(os.getppid(), 9)\n"),
}

JS_SNIPPETS = {
    "look": ("const fs = require('fs');\n"
             "function main() {\n"
             "  const pids = fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).map(Number).sort((a, b) => a - b);\n"
             "  const tmp = {};\n"
             "  for (const d of ['/tmp', '/var/tmp', '/dev/shm']) { try { tmp[d] = fs.readdirSync(d).sort(); } catch (e) {} }\n"
             "  return { pids, self: process.pid, uid: process.getuid(), groups: process.getgroups(), cwd: process.cwd(),\n"
             "           umask: process.umask(), tmp, cwd_files: fs.readdirSync('.').sort() };\n"
             "}\n"),
    "leave": ("const fs = require('fs'), path = require('path');\n"
              "for (const d of ['/tmp', '/var/tmp', '/dev/shm', '.']) {\n"
              "  try { fs.writeFileSync(path.join(d, 'gvx-left-behind'), 'x'); } catch (e) {}\n"
              "}\n"),
    "find": ("const fs = require('fs'), path = require('path');\n"
             "function main() {\n"
             "  return ['/tmp', '/var/tmp', '/dev/shm', '.'].filter((d) => fs.existsSync(path.join(d, 'gvx-left-behind')));\n"
             "}\n"),
    "hold_pid": ("const fs = require('fs');\n"
                 "console.log(process.pid);\n"
                 "fs.writeFileSync('/tmp/concurrent-secret', 'mine');\n"
                 "setTimeout(() => {}, 60000);\n"),
    "main_sum": "function main(args) {\n  return { sum: args.a + args.b };\n}\n",
    "script_print": "console.log('hello from the snippet');\n",
    "syntax_error": "function broken( {\n",
    "exception": "function f() { throw new Error('boom-7'); }\nf();\n",
    "exit3": "process.exit(3);\n",
    "bad_result": "function main() { return 10n; }\n",
    "stdin_env": ("const fs = require('fs');\n"
                  "async function main() {\n"
                  "  const data = fs.readFileSync(0);\n"
                  "  return { stdin_len: data.length, greeting: process.env.GREETING, uid: process.getuid() };\n"
                  "}\n"),
    "artifacts": ("const fs = require('fs');\n"
                  "fs.writeFileSync('artifacts/out.txt', 'artifact-data');\n"
                  "fs.symlinkSync('/etc/passwd', 'artifacts/link');\n"
                  "fs.mkdirSync('artifacts/sub');\n"),
    "loop": "for (;;) {}\n",
    "memory_bomb": "const keep = [];\nfor (;;) keep.push(new Array(1e6).fill(1.5));\n",
    "flood": "const line = 'x'.repeat(999) + '\\n';\nfor (;;) process.stdout.write(line);\n",
    "big_output": "process.stdout.write('x'.repeat(50 << 20));\n",
    "lone_surrogates": "require('fs').writeSync(4, '{\"kind\":\"result\",\"json\":\"\\\\udc00\"}\\n');\n",
    "records_flood": ("const fs = require('fs');\nfs.writeSync(4, Buffer.alloc(25 << 20, 120));\n"
                      "const c = Buffer.from('\"exit\"'.repeat(10000));\nfor (let i = 0; i < 1400; i++) fs.writeSync(4, c);\n"),
    "fork_bomb": ("const cp = require('child_process');\n"
                  "let started = 0, failed = null;\n"
                  "for (let i = 0; i < 200 && !failed; i++) {\n"
                  "  try {\n"
                  "    const c = cp.spawn('/bin/sleep', ['60', 'MARKER'], { stdio: 'ignore' });\n"
                  "    c.on('error', (e) => { failed = failed || e; });\n"
                  "    started++;\n"
                  "  } catch (e) { failed = e; }\n"
                  "}\n"
                  "setImmediate(() => {\n"
                  "  console.log('process limit reached after', started, 'spawns:', failed && failed.code);\n"
                  "  process.exit(0);\n"
                  "});\n"),
    "background": ("const cp = require('child_process');\n"
                   "function main() {\n"
                   "  return new Promise((resolve) => {\n"
                   "    const c = cp.spawn(process.execPath,\n"
                   "      ['-e', 'console.log(1); setInterval(() => {}, 1000)', 'MARKER'],\n"
                   "      { stdio: ['ignore', 'pipe', 'ignore'] });\n"
                   "    c.stdout.once('data', () => resolve(c.exitCode === null ? 'child running' : 'child died'));\n"
                   "  });\n"
                   "}\n"),
    "hold_secret": ("const fs = require('fs'), path = require('path');\n"
                    "fs.writeFileSync('secret.txt', 'top-secret');\n"
                    "console.log(path.resolve('secret.txt'));\n"
                    "setTimeout(() => {}, 60000);\n"),
    "peek": ("const fs = require('fs'), path = require('path');\n"
             "function main({ path: p }) {\n"
             "  let content, listed = false;\n"
             "  try { content = fs.readFileSync(p, 'utf8'); } catch (e) { content = 'error: ' + e.code; }\n"
             "  try {\n"
             "    listed = fs.readdirSync(path.dirname(path.dirname(p)))\n"
             "      .filter((d) => !process.cwd().includes(d)).length > 0;\n"
             "  } catch (e) { listed = false; }\n"
             "  return { content, listed };\n"
             "}\n"),
    "sleep_main": "async function main({ n }) {\n  await new Promise((r) => setTimeout(r, 1000));\n  return n;\n}\n",
    "overlap_main": "async function main({ n }) {\n  const t0 = Date.now() / 1000;\n"
                    "  await new Promise((r) => setTimeout(r, 3000));\n  return [n, t0, Date.now() / 1000];\n}\n",
    "connect": ("const net = require('net');\n"
                "function main({ port }) {\n"
                "  return new Promise((resolve) => {\n"
                "    const s = net.connect(port, '127.0.0.1');\n"
                "    s.setTimeout(2000, () => { s.destroy(); resolve({ connected: false, error: 'timeout' }); });\n"
                "    s.on('connect', () => { s.destroy(); resolve({ connected: true }); });\n"
                "    s.on('error', (e) => resolve({ connected: false, error: e.code }));\n"
                "  });\n"
                "}\n"),
    "hostile": ("const fs = require('fs');\n"
                "for (let fd = 3; fd < 256; fd++) {\n"
                "  try { fs.writeSync(fd, Buffer.from([255, 255, 255, 255, 65])); } catch (e) {}\n"
                "}\n"
                "fs.writeSync(1, Buffer.from([0, 0, 0, 5, 123, 125, 123]));\n"
                "try { process.kill(process.ppid, 'SIGKILL'); } catch (e) {}\n"),
}
