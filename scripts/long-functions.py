#!/usr/bin/env python3
"""List C/CUDA functions longer than N lines (signature start .. closing brace at column 0) in
product code (tests/, scripts/, bench/ and build*/ skipped). Issue 17: none over 120 outside
generated tables. Usage: python3 scripts/long-functions.py . [N]   (an optional tool)"""
import os, re, sys
LIMIT = int(sys.argv[2]) if len(sys.argv) > 2 else 120
root = sys.argv[1]
SKIP_DIRS = {'tests', 'scripts', 'bench', '.git'}
EXTS = ('.c', '.h', '.cu', '.cuh', '.cpp', '.inc')
def strip(line, state):
    out = []; i = 0
    while i < len(line):
        if state['com']:
            j = line.find('*/', i)
            if j < 0: return ''.join(out)
            state['com'] = False; i = j + 2; continue
        c = line[i]
        if line.startswith('/*', i): state['com'] = True; i += 2; continue
        if line.startswith('//', i): break
        if c in '"\'':
            q = c; i += 1
            while i < len(line) and line[i] != q:
                i += 2 if line[i] == '\\' else 1
            i += 1; out.append('""'); continue
        out.append(c); i += 1
    return ''.join(out)
res = []
for dp, dns, fns in os.walk(root):
    rel = os.path.relpath(dp, root)
    top = rel.split(os.sep)[0]
    if top in SKIP_DIRS or top.startswith('build'): dns[:] = []; continue
    for fn in fns:
        if not fn.endswith(EXTS) or fn == 'unicode-tables.c': continue
        p = os.path.join(dp, fn)
        lines = open(p, errors='replace').read().split('\n')
        st = {'com': False}; depth = 0; start = None; last_stmt = -1; name = None
        for n, raw in enumerate(lines):
            s = strip(raw, st)
            d0 = depth
            for ch in s:
                if ch == '{':
                    if depth == 0: start = last_stmt + 1
                    depth += 1
                elif ch == '}': depth -= 1
            if d0 > 0 and depth == 0 and start is not None:
                sig = ' '.join(strip(l, {'com': False}) for l in lines[start:n + 1]).split('{')[0]
                if raw.startswith('}') and not s.strip().startswith('};') and 'extern' not in sig \
                        and not re.match(r'\s*(typedef|struct|enum|union)\b', sig) and '=' not in sig:
                    m = [c for c in re.findall(r'([A-Za-z_]\w*)\s*\(', sig)
                         if c not in ('__attribute__', '__launch_bounds__')]
                    ln = n - start + 1
                    if ln > LIMIT: res.append((ln, os.path.relpath(p, root), start + 1, m[0] if m else '?'))
                start = None
            if depth == 0:
                t = s.strip()
                if t == '' or t.startswith('#') or t.endswith((';', '}')) or raw.startswith('}'):
                    last_stmt = n
for r in sorted(res, reverse=True): print('%4d  %s:%d  %s' % r)
