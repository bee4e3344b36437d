// The expression language of Casbin matchers and of policy conditions (`eval(p.cond)`), parsed
// into a small tree so walcast can specialise each policy for a table, find which users a row
// can reach, and evaluate with no per-decision parsing. The subset is the one Casbin's
// expression evaluator shares with JavaScript: literals, member access, calls, ! - + == != ===
// !== < <= > >= && ||, parentheses. Anything else is refused at start with the position.
import { AuthConfigError } from '../errors.js';

export type Expr =
  | { k: 'lit'; v: unknown }
  /** `r.obj.row.x` → root "r", path ["obj","row","x"]; `p.sub` → root "p", path ["sub"]. */
  | { k: 'ref'; root: string; path: string[] }
  | { k: 'call'; fn: string; args: Expr[] }
  | { k: 'bin'; op: BinOp; l: Expr; r: Expr }
  | { k: 'not'; e: Expr }
  | { k: 'neg'; e: Expr };

export type BinOp = '||' | '&&' | '==' | '!=' | '===' | '!==' | '<' | '<=' | '>' | '>=' | '+' | '-';

type Tok = { t: 'num' | 'str' | 'id' | 'op'; v: string; at: number };

const OPS = ['===', '!==', '==', '!=', '<=', '>=', '&&', '||', '<', '>', '!', '+', '-', '(', ')', ','];

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      let s = '';
      while (j < src.length && src[j] !== c) {
        if (src[j] === '\\' && j + 1 < src.length) j++;
        s += src[j++];
      }
      if (j >= src.length) throw syntax(src, i, 'unterminated string');
      out.push({ t: 'str', v: s, at: i });
      i = j + 1;
      continue;
    }
    const num = /^\d+(\.\d+)?/.exec(src.slice(i));
    if (num) {
      out.push({ t: 'num', v: num[0], at: i });
      i += num[0].length;
      continue;
    }
    const id = /^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*/.exec(src.slice(i));
    if (id) {
      out.push({ t: 'id', v: id[0], at: i });
      i += id[0].length;
      continue;
    }
    const op = OPS.find((o) => src.startsWith(o, i));
    if (!op) throw syntax(src, i, `unexpected "${c}"`);
    out.push({ t: 'op', v: op, at: i });
    i += op.length;
  }
  return out;
}

function syntax(src: string, at: number, what: string): AuthConfigError {
  return new AuthConfigError(`cannot use the expression ${JSON.stringify(src)}: ${what} at ${at}`, 'walcast evaluates the Casbin expression subset: literals, r./p. members, function calls, ! - + == != < <= > >= && || and parentheses');
}

/** Parses a matcher or condition; throws AuthConfigError with the offending position. */
export function parseExpr(src: string): Expr {
  const toks = tokenize(src);
  let i = 0;
  const peek = (v: string) => toks[i]?.t === 'op' && toks[i].v === v;
  const expect = (v: string) => {
    if (!peek(v)) throw syntax(src, toks[i]?.at ?? src.length, `expected "${v}"`);
    i++;
  };
  const level = (ops: BinOp[], next: () => Expr) => (): Expr => {
    let l = next();
    while (toks[i]?.t === 'op' && (ops as string[]).includes(toks[i].v)) {
      const op = toks[i++].v as BinOp;
      l = { k: 'bin', op, l, r: next() };
    }
    return l;
  };
  const primary = (): Expr => {
    const t = toks[i++];
    if (!t) throw syntax(src, src.length, 'unexpected end');
    if (t.t === 'num') return { k: 'lit', v: Number(t.v) };
    if (t.t === 'str') return { k: 'lit', v: t.v };
    if (t.t === 'op' && t.v === '(') {
      const e = or();
      expect(')');
      return e;
    }
    if (t.t === 'op' && t.v === '!') return { k: 'not', e: primary() };
    if (t.t === 'op' && t.v === '-') return { k: 'neg', e: primary() };
    if (t.t !== 'id') throw syntax(src, t.at, `unexpected "${t.v}"`);
    if (t.v === 'true' || t.v === 'false') return { k: 'lit', v: t.v === 'true' };
    if (t.v === 'null') return { k: 'lit', v: null };
    if (t.v === 'undefined') return { k: 'lit', v: undefined };
    if (peek('(')) {
      if (t.v.includes('.')) throw syntax(src, t.at, `method calls are not supported (${t.v})`);
      i++;
      const args: Expr[] = [];
      while (!peek(')')) {
        args.push(or());
        if (!peek(')')) expect(',');
      }
      i++;
      return { k: 'call', fn: t.v, args };
    }
    return refOf(t.v, src, t.at);
  };
  const add = level(['+', '-'], primary);
  const rel = level(['<', '<=', '>', '>='], add);
  const eq = level(['==', '!=', '===', '!=='], rel);
  const and = level(['&&'], eq);
  const or = level(['||'], and);
  const e = or();
  if (i < toks.length) throw syntax(src, toks[i].at, `unexpected "${toks[i].v}"`);
  return e;
}

/** `r.obj.row` and Casbin's escaped `r_obj.row` name the same thing. */
function refOf(name: string, src: string, at: number): Expr {
  const parts = name.split('.');
  const m = /^([rp])_(\w+)$/.exec(parts[0]);
  if (m) return { k: 'ref', root: m[1], path: [m[2], ...parts.slice(1)] };
  if ((parts[0] === 'r' || parts[0] === 'p') && parts.length > 1) return { k: 'ref', root: parts[0], path: parts.slice(1) };
  throw syntax(src, at, `unknown name "${name}" (use r.sub, r.obj, r.act or p.<field>)`);
}
