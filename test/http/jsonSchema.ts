/** A small JSON Schema checker (the subset the OpenAPI document uses): returns the problems found. */
type Schema = Record<string, any>;

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

export function validate(value: unknown, schema: Schema, root: Schema, path = '$'): string[] {
  if (schema.$ref) {
    const name = String(schema.$ref).replace('#/components/schemas/', '');
    const target = root.components.schemas[name];
    if (!target) return [`${path}: unknown $ref ${schema.$ref}`];
    return validate(value, target, root, path);
  }
  const problems: string[] = [];
  if (schema.anyOf) {
    const all = (schema.anyOf as Schema[]).map((s) => validate(value, s, root, path));
    if (all.every((p) => p.length > 0))
      problems.push(`${path}: matches no anyOf branch (${all.map((p) => p[0]).join(' | ')})`);
  }
  if (schema.allOf)
    for (const s of schema.allOf as Schema[]) problems.push(...validate(value, s, root, path));
  if (schema.enum && !(schema.enum as unknown[]).includes(value))
    problems.push(`${path}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  if ('const' in schema && value !== schema.const)
    problems.push(`${path}: expected ${JSON.stringify(schema.const)}`);
  if (schema.type) {
    const t = typeOf(value);
    const ok = schema.type === t || (schema.type === 'number' && t === 'integer');
    if (!ok) return [...problems, `${path}: expected ${schema.type}, got ${t}`];
  }
  if (typeof value === 'string' && schema.pattern && !new RegExp(schema.pattern).test(value))
    problems.push(`${path}: ${JSON.stringify(value)} does not match ${schema.pattern}`);
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum)
      problems.push(`${path}: below ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum)
      problems.push(`${path}: above ${schema.maximum}`);
  }
  if (Array.isArray(value) && schema.items)
    for (const [i, v] of value.entries()) problems.push(...validate(v, schema.items, root, `${path}[${i}]`));
  if (typeOf(value) === 'object') {
    const o = value as Record<string, unknown>;
    for (const k of (schema.required as string[] | undefined) ?? [])
      if (!(k in o)) problems.push(`${path}: missing required ${k}`);
    const props = (schema.properties as Record<string, Schema> | undefined) ?? {};
    for (const [k, v] of Object.entries(o)) {
      if (props[k]) problems.push(...validate(v, props[k], root, `${path}.${k}`));
      else if (schema.additionalProperties === false) problems.push(`${path}: undocumented property ${k}`);
    }
  }
  return problems;
}
