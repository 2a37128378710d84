#!/usr/bin/env python3
"""Independent generator of the LongEval lines golden prompt used by test_calib.c.

Re-implements, without our C code, GSL's mt19937 (gsl_rng_set = Matsumoto-Nishimura
init_genrand, seed 0 -> 4357) and gsl_rng_uniform_int (scale = (max - min) / n; draw until
k = x / scale < n), then the draw order documented in docs/calibration.md:
per line, label words a, b (redrawn while a == b or the pair was used), then value
1 + uniform_int(50000). Prints the prompt as a Python repr. Python 3 standard library only.
Usage: python3 make_lines_golden.py SEED N_LINES QUERY_INDEX
"""
import sys

WORDS = ["apple", "stone", "cloud", "amber", "maple"]  # the test list after filtering

class MT19937:
    def __init__(self, seed):
        if seed == 0:
            seed = 4357
        self.mt = [seed & 0xffffffff]
        for i in range(1, 624):
            prev = self.mt[i - 1]
            self.mt.append((1812433253 * (prev ^ (prev >> 30)) + i) & 0xffffffff)
        self.i = 624

    def get(self):
        if self.i >= 624:
            for k in range(624):
                y = (self.mt[k] & 0x80000000) | (self.mt[(k + 1) % 624] & 0x7fffffff)
                self.mt[k] = self.mt[(k + 397) % 624] ^ (y >> 1) ^ (0x9908b0df if y & 1 else 0)
            self.i = 0
        y = self.mt[self.i]
        self.i += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c5680
        y ^= (y << 15) & 0xefc60000
        y ^= y >> 18
        return y

    def uniform_int(self, n):
        scale = 0xffffffff // n
        while True:
            k = self.get() // scale
            if k < n:
                return k

def main():
    seed, n, q = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    r = MT19937(seed)
    used, lines = set(), []
    W = len(WORDS)
    for _ in range(n):
        while True:
            a, b = r.uniform_int(W), r.uniform_int(W)
            if a != b and (a, b) not in used:
                break
        used.add((a, b))
        lines.append((WORDS[a] + "-" + WORDS[b], 1 + r.uniform_int(50000)))
    header = ("Below is a record of lines I want you to remember. Each line begins with 'line <line index>' "
              "and contains a '<REGISTER_CONTENT>' at the end of the line as a numerical value. For each "
              "line index, memorize its corresponding <REGISTER_CONTENT>. At the end of the record, I will "
              "ask you to retrieve the corresponding <REGISTER_CONTENT> of a certain line index. Now the "
              "record start:\n\n")
    body = "".join("line %s: REGISTER_CONTENT is <%d>\n" % lv for lv in lines)
    question = ("\nNow the record is over. Tell me what is the <REGISTER_CONTENT> in line %s? "
                "I need the number." % lines[q][0])
    print(repr(header + body + question))
    print("expected:", lines[q][1])

if __name__ == "__main__":
    main()
