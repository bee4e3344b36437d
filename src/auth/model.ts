// A Casbin model file, read with Casbin's own parser, in the shape walcast evaluates: the fixed
// request (sub, obj, act), one policy type `p`, role definitions g/g2/…, allow-override effect
// (deny unless a policy allows) and a matcher in the supported expression subset.
import { newModelFromString } from 'casbin';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuthConfigError, PolicyError } from '../errors.js';
import { packageRoot } from '../util/package-root.js';
import { checkFunctions } from './compile.js';
import { parseExpr, type Expr } from './expr.js';

export interface PolicyModel {
  /** Where it came from, for messages. */
  source: string;
  /** Field names of p, in column order (v0, v1, …): sub, kind, name, act, cond by default. */
  pTokens: string[];
  gNames: string[];
  gNameSet: ReadonlySet<string>;
  matcher: Expr;
  /** Fields of p whose value is an expression: those the matcher passes to eval(). */
  evalTokens: string[];
}

export function defaultModelPath(): string {
  return join(packageRoot(), 'models', 'default.conf');
}

export function loadModel(path = defaultModelPath()): PolicyModel {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new AuthConfigError(`cannot read the model ${path}: ${(err as Error).message}`, 'pass --model with a Casbin model file, or leave it out for the default model', { cause: err });
  }
  return parseModel(text, path);
}

export function parseModel(text: string, source = 'model'): PolicyModel {
  const hint = 'see models/default.conf: request sub, obj, act; policy p; roles g, g2; effect some(where (p.eft == allow))';
  const fail = (what: string) => new AuthConfigError(`the model ${source} cannot be used: ${what}`, hint);
  let m: ReturnType<typeof newModelFromString>;
  try {
    m = newModelFromString(text);
  } catch (err) {
    throw fail((err as Error).message);
  }
  const sec = (s: string) => m.model.get(s);
  const r = sec('r')?.get('r');
  if (!r || r.tokens.join(',') !== 'r_sub,r_obj,r_act') throw fail('the request must be "r = sub, obj, act" (the fixed walcast request)');
  const p = sec('p')?.get('p');
  if (!p) throw fail('no policy definition "p"');
  const pTokens = p.tokens.map((t) => t.replace(/^p_/, ''));
  if (pTokens.includes('eft')) throw fail('deny rules (p.eft) are not supported: policies only allow');
  const effect = sec('e')?.get('e')?.value.replace(/\s+/g, '');
  if (effect !== 'some(where(p_eft==allow))') throw fail(`effect "${effect}" is not supported: use some(where (p.eft == allow))`);
  const matcherText = sec('m')?.get('m')?.value;
  if (!matcherText) throw fail('no matcher "m"');
  const gNames = [...(sec('g')?.keys() ?? [])];
  const gNameSet = new Set(gNames);
  const matcher = parseExpr(matcherText);
  const unknown = checkFunctions(matcher, gNameSet);
  if (unknown) throw fail(`the function ${unknown}() is not supported`);
  return { source, pTokens, gNames, gNameSet, matcher, evalTokens: evalTokensOf(matcher) };
}

function evalTokensOf(x: Expr, into: string[] = []): string[] {
  if (x.k === 'call') {
    const a = x.args[0];
    if (x.fn === 'eval' && a?.k === 'ref' && a.root === 'p' && a.path.length === 1) into.push(a.path[0]);
    for (const arg of x.args) evalTokensOf(arg, into);
  } else if (x.k === 'bin') {
    evalTokensOf(x.l, into);
    evalTokensOf(x.r, into);
  } else if (x.k === 'not' || x.k === 'neg') evalTokensOf(x.e, into);
  return into;
}

/** Refuses a rule the model could not use (`walcast policy add`): it would silently allow nothing. */
export function checkRule(m: PolicyModel, ptype: string, values: string[]): void {
  if (ptype.startsWith('g')) {
    if (!m.gNameSet.has(ptype)) throw new PolicyError(`the model ${m.source} has no role definition ${ptype}`, `its role definitions: ${m.gNames.join(', ') || 'none'}`);
    if (values.length !== 2) throw new PolicyError(`a ${ptype} link has 2 values (user, role), got ${values.length}`, 'e.g. walcast policy add g alice role:editor');
    return;
  }
  if (ptype !== 'p') throw new PolicyError(`walcast evaluates one policy type, p; got ${ptype}`, 'use p, or g/g2 for links');
  if (values.length !== m.pTokens.length) {
    throw new PolicyError(`a p rule of ${m.source} has ${m.pTokens.length} values (${m.pTokens.join(', ')}), got ${values.length}`, `e.g. walcast policy add p '*' table public.messages read 'g2(r.sub.id, "room:" + r.obj.row.room_id)'`);
  }
  for (const t of m.evalTokens) {
    const text = values[m.pTokens.indexOf(t)];
    let x: Expr;
    try {
      x = parseExpr(text);
    } catch (err) {
      throw new PolicyError(`the ${t} ${JSON.stringify(text)} does not parse: ${(err as Error).message}`, 'conditions are Casbin expressions: r.sub.<claim>, r.obj.row.<column>, g2(a, b), ==, &&, ||, !, +', { cause: err });
    }
    const bad = checkFunctions(x, m.gNameSet);
    if (bad) throw new PolicyError(`the ${t} calls ${bad}(), which the model does not define`, `available: ${[...m.gNames, 'keyMatch', 'keyMatch2', 'regexMatch', 'globMatch', 'ipMatch'].join(', ')}`);
  }
}
