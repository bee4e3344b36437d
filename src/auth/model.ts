// A Casbin model file, read with Casbin's own parser, in the shape walcast evaluates: the fixed
// request (sub, obj, act), one policy type `p`, role definitions g/g2/…, allow-override effect
// (deny unless a policy allows) and a matcher in the supported expression subset.
import { newModelFromString } from 'casbin';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuthConfigError } from '../errors.js';
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
  return { source, pTokens, gNames, gNameSet, matcher };
}
