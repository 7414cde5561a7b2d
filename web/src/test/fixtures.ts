/** Shared test data in the API's wire shape (snake_case) and as the client maps it. */
import { toBillingEvent, toBillingInfo, toLogRow, toUsage } from '../api/client'
import type { BillingEvent, BillingInfo, LogRow, Usage } from '../api/types'

export const WABAS = [
  { waba_id: '102290129340398', name: 'Sales', spent_this_cycle: 101_995_600 },
  { waba_id: '109836254417782', name: 'Support', spent_this_cycle: 32_962_600 },
  { waba_id: '114578203396121', name: 'Promo', spent_this_cycle: 52_673_200 },
]

export function wireInfo(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    billing_version: 'v3',
    currency: 'IDR',
    currency_exponent: 2,
    timezone: 'Asia/Jakarta',
    balance: {
      total: 62_331_600,
      available: 162_331_600,
      wabi: { allowance: 200_000_000, remaining: 12_331_600, resets_at: '2026-12-18T17:00:00+00:00' },
      additional: { remaining: 50_000_000 },
      postpaid: { limit: 100_000_000, used: 0 },
    },
    threshold_percent: '40.00',
    funded_this_cycle: 250_000_000,
    low_balance: true,
    below_zero: false,
    cycle: { starts_at: '2026-11-18T17:00:00+00:00', ends_at: '2026-12-18T17:00:00+00:00' },
    wabas: WABAS,
    as_of: '2026-12-01T19:40:00+00:00',
    stale: false,
    ...overrides,
  }
}

export function info(overrides: Record<string, unknown> = {}): BillingInfo {
  return toBillingInfo(wireInfo(overrides))
}

export function wireUsage(): Record<string, unknown> {
  return {
    currency: 'IDR',
    days: [
      {
        date: '2026-11-29',
        amount: 3_000_000,
        messages: 60,
        by_waba: [
          { waba_id: WABAS[0]!.waba_id, amount: 2_000_000, messages: 40 },
          { waba_id: WABAS[2]!.waba_id, amount: 1_000_000, messages: 20 },
        ],
      },
      {
        date: '2026-11-30',
        amount: 1_500_000,
        messages: 30,
        by_waba: [{ waba_id: WABAS[1]!.waba_id, amount: 1_500_000, messages: 30 }],
      },
      { date: '2026-12-01', amount: 0, messages: 0, by_waba: [] },
    ],
  }
}

export function usage(): Usage {
  return toUsage(wireUsage())
}

export function wireLogRow(id: number, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    deduction_id: id,
    created_at: '2026-12-01T07:01:07+00:00',
    unique_code: `wamid.${id}`,
    broadcast_id: 'bc-0006',
    message_id: `wamid.${id}`,
    category: 'marketing',
    deduction_code: 'wa_marketing_id',
    quantity: 1,
    unit_price: 68_000,
    amount: 68_000,
    credited_to: 'wa_balance_initial',
    allocations: [{ credited_to: 'wa_balance_initial', quota_type: 'initial', amount: 68_000 }],
    customer_name: 'B••• S•••',
    phone_number: '+62•••789',
    refunded: false,
    ...overrides,
  }
}

export function logRow(id: number, overrides: Record<string, unknown> = {}): LogRow {
  return toLogRow(wireLogRow(id, overrides))
}

export function wireEvent(id: number, type: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: `evt-${id}`,
    type,
    created_at: '2026-11-30T07:56:00+00:00',
    data: { threshold_percent: '40.00', total: 99_985_200 },
    delivery: { state: 'delivered', attempts: 1, delivered_at: '2026-11-30T07:56:02+00:00', next_attempt_at: null, last_error: null },
    ...overrides,
  }
}

export function event(id: number, type: string, overrides: Record<string, unknown> = {}): BillingEvent {
  return toBillingEvent(wireEvent(id, type, overrides))
}

/** A fetch that answers by path (without the API prefix and query) with a JSON body or a status. */
export type Route = { status?: number; body?: unknown; text?: string; delayMs?: number; headers?: Record<string, string> }

export function fakeFetch(routes: Record<string, Route | ((url: URL) => Route)>): {
  fetch: typeof fetch
  calls: { url: URL; init: RequestInit | undefined }[]
} {
  const calls: { url: URL; init: RequestInit | undefined }[] = []
  const fetchImpl = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input), 'http://page.test')
    calls.push({ url, init })
    const path = url.pathname.replace('/api/core/v1', '')
    const found = routes[path]
    const route = typeof found === 'function' ? found(url) : found
    if (!route) return new Response(JSON.stringify({ error: { code: 'not_found', message: 'no route' } }), { status: 404 })
    if (route.delayMs) await new Promise((resolve) => setTimeout(resolve, route.delayMs))
    if (init?.signal?.aborted) throw new DOMException('aborted', 'AbortError')
    const body = route.text ?? JSON.stringify(route.body ?? {})
    return new Response(body, { status: route.status ?? 200, headers: route.headers })
  }
  return { fetch: fetchImpl as typeof fetch, calls }
}

export function envelope(code: string, message: string): { error: { code: string; message: string; details: object } } {
  return { error: { code, message, details: {} } }
}
