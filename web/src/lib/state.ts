/** The five states every data surface is in (web/README.md has the matrix). */
export type SurfaceState = 'loading' | 'empty' | 'error' | 'partial' | 'success'
/** A follow-up request (the next page) beside a surface that already shows data. */
export type MoreState = 'idle' | 'loading' | 'error'

import { ApiError } from '../api/client'

/** What to say about a failure: the API's own message when it sent one. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.status === 0) return 'the network request failed; check your connection.'
    if (error.status === 401) return 'your session has ended; sign in again.'
    if (error.status === 403) return 'your role may not see this.'
    return error.message.endsWith('.') ? error.message : `${error.message}.`
  }
  return 'something went wrong.'
}
