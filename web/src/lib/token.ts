/** What the page may read from its bearer token: the role, to offer only the actions the API allows. */

export type Role = 'owner' | 'admin' | 'supervisor' | 'agent' | 'member'
const ROLES: readonly string[] = ['owner', 'admin', 'supervisor', 'agent', 'member']

/** The `role` claim of a JWT (not verified: the API decides; this only hides buttons that would be refused). */
export function roleOf(token: string | null): Role | null {
  const payload = token?.split('.')[1]
  if (!payload) return null
  try {
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(payload.length / 4) * 4, '='))
    const role = (JSON.parse(json) as { role?: unknown }).role
    return typeof role === 'string' && ROLES.includes(role) ? (role as Role) : null
  } catch {
    return null
  }
}

/** Owners and admins change spending caps (SPEC section 5). */
export function mayEditCaps(role: Role | null): boolean {
  return role === 'owner' || role === 'admin'
}
