// toYAML renders a JSON value as YAML for reading (block style, keys in
// the object's order; strings quoted when YAML would read them as
// something else).
export function toYAML(v: unknown, indent = ""): string {
  if (Array.isArray(v)) {
    if (v.length === 0) return "[]";
    return v
      .map((x) => {
        const s = toYAML(x, indent + "  ");
        return "\n" + indent + "- " + (isBlock(x) ? s.replace(/^\n\s*/, "") : s);
      })
      .join("");
  }
  if (v !== null && typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>);
    if (entries.length === 0) return "{}";
    return entries
      .map(([k, x]) => "\n" + indent + scalar(k) + ":" + (isBlock(x) ? "" : " ") + toYAML(x, indent + "  "))
      .join("");
  }
  return scalar(v);
}

function isBlock(x: unknown): boolean {
  if (Array.isArray(x)) return x.length > 0;
  return x !== null && typeof x === "object" && Object.keys(x as object).length > 0;
}

function scalar(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  const s = String(v);
  if (s === "" || /^[\s]|[\s]$|[:#{}[\],&*!|>'"%@`\n]|^-|^(true|false|null|yes|no|on|off|~)$/i.test(s) || /^[0-9.+-]/.test(s))
    return JSON.stringify(s);
  return s;
}
