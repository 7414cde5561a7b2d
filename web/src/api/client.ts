/**
 * The one place that speaks HTTP to the billing API. Wire bodies are snake_case; everything this module returns is
 * camelCase (api/types.ts). Errors come back as `ApiError` with the envelope's code, whatever went wrong:
 *
 *   ApiError
 *   ├─ status 0   the network failed or the request was aborted (`code` "network" / "aborted")
 *   └─ status N   the API answered N with `{"error": {"code", "message", "details"}}` (or something unexpected)
 */

import { DEFAULT_TIMEZONE, addDays, isValidTimeZone, zoneFromCycleStart, zonedMidnight } from '../lib/time'
import type {
  AlertSettings,
  AnalyticsEventName,
  AnalyticsProperties,
  BalanceFigures,
  BillingEvent,
  BillingInfo,
  BillingVersion,
  CsvFile,
  DeliveryState,
  EventPage,
  Forecast,
  LogFilters,
  LogPage,
  LogRow,
  TopUpRequest,
  SpendCap,
  Usage,
  WabaSummary,
} from './types'

export const API_PREFIX = '/api/core/v1'

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message)
    this.name = 'ApiError'
  }
}

export interface ClientOptions {
  /** Origin (and path) the API lives under; '' for the page's own origin. */
  baseUrl?: string
  /** The bearer token, read on every request (the host may refresh it). */
  token: () => string | null
  /** The transport; tests pass a fake. */
  fetch?: typeof fetch
}

type Json = Record<string, unknown>

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function int(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw new ApiError(200, 'bad_response', `the API sent a non-integer ${field}`)
  }
  return value
}

function str(value: unknown, field: string): string {
  if (typeof value !== 'string') throw new ApiError(200, 'bad_response', `the API sent no ${field}`)
  return value
}

function optStr(value: unknown): string | null {
  return typeof value === 'string' ? value : null
}

function obj(value: unknown, field: string): Json {
  if (!isRecord(value)) throw new ApiError(200, 'bad_response', `the API sent no ${field}`)
  return value
}

function list(value: unknown, field: string): unknown[] {
  if (!Array.isArray(value)) throw new ApiError(200, 'bad_response', `the API sent no ${field} list`)
  return value
}

function toBalance(raw: unknown): BalanceFigures {
  const body = obj(raw, 'balance')
  const wabi = obj(body.wabi, 'wabi')
  const postpaid = obj(body.postpaid, 'postpaid')
  return {
    total: int(body.total, 'total'),
    available: int(body.available, 'available'),
    wabi: {
      allowance: int(wabi.allowance, 'wabi.allowance'),
      remaining: int(wabi.remaining, 'wabi.remaining'),
      resetsAt: str(wabi.resets_at, 'wabi.resets_at'),
    },
    additional: { remaining: int(obj(body.additional, 'additional').remaining, 'additional.remaining') },
    postpaid: { limit: int(postpaid.limit, 'postpaid.limit'), used: int(postpaid.used, 'postpaid.used') },
  }
}

function toBillingVersion(value: unknown): BillingVersion {
  return value === 'v2' || value === 'v3' ? value : 'unknown'
}

export function toBillingInfo(raw: unknown): BillingInfo {
  const body = obj(raw, 'billing info')
  const cycle = obj(body.cycle, 'cycle')
  const startsAt = str(cycle.starts_at, 'cycle.starts_at')
  const zone = optStr(body.timezone)
  const exponent = body.currency_exponent
  return {
    billingVersion: toBillingVersion(body.billing_version),
    currency: str(body.currency, 'currency'),
    currencyExponent: typeof exponent === 'number' && Number.isInteger(exponent) ? exponent : null,
    timezone: zone && isValidTimeZone(zone) ? zone : zoneFromCycleStart(startsAt),
    balance: toBalance(body.balance),
    thresholdPercent: String(body.threshold_percent ?? '40'),
    fundedThisCycle: body.funded_this_cycle == null ? null : int(body.funded_this_cycle, 'funded_this_cycle'),
    lowBalance: body.low_balance === true,
    belowZero: body.below_zero === true,
    cycle: { startsAt, endsAt: str(cycle.ends_at, 'cycle.ends_at') },
    wabas: list(body.wabas, 'wabas').map((item) => {
      const waba = obj(item, 'waba')
      const summary: WabaSummary = {
        wabaId: str(waba.waba_id, 'waba_id'),
        name: str(waba.name, 'name'),
        spentThisCycle: int(waba.spent_this_cycle ?? 0, 'spent_this_cycle'),
        dailySpend: int(waba.daily_spend ?? 0, 'daily_spend'),
        balance: isRecord(waba.balance) ? toBalance(waba.balance) : null,
      }
      // Caps are shown to owners, admins and supervisors only: the API leaves the fields out for the others.
      if ('spend_cap' in waba) {
        summary.spendCap = toSpendCap(waba.spend_cap)
        summary.capSpent = waba.cap_spent == null ? null : int(waba.cap_spent, 'cap_spent')
      }
      return summary
    }),
    asOf: optStr(body.as_of),
    stale: body.stale === true,
    forecast: toForecast(body.forecast),
    topUpRequest: toTopUpRequest(body.top_up_request),
  }
}

function toForecast(raw: unknown): Forecast | null {
  if (!isRecord(raw)) return null
  return {
    runsOutAt: optStr(raw.runs_out_at),
    dailySpend: int(raw.daily_spend ?? 0, 'forecast.daily_spend'),
    basisDays: int(raw.basis_days ?? 0, 'forecast.basis_days'),
  }
}

function toTopUpRequest(raw: unknown): TopUpRequest | null {
  if (!isRecord(raw)) return null
  return {
    paymentReference: str(raw.payment_reference, 'top_up_request.payment_reference'),
    amount: int(raw.amount, 'top_up_request.amount'),
    requestedAt: str(raw.requested_at, 'top_up_request.requested_at'),
    expiresAt: str(raw.expires_at, 'top_up_request.expires_at'),
    wabaId: optStr(raw.waba_id),
  }
}

export function toAlertSettings(raw: unknown): AlertSettings {
  const body = obj(raw, 'balance alerts')
  const recharge = isRecord(body.auto_recharge) ? body.auto_recharge : null
  return {
    alerts: list(body.alerts, 'alerts').map((item) => {
      const alert = obj(item, 'alert')
      const kind = alert.kind === 'percent' ? 'percent' : 'amount'
      return { kind, value: int(alert.value, 'alert.value') }
    }),
    autoRecharge: recharge
      ? {
          below: int(recharge.below, 'auto_recharge.below'),
          amount: int(recharge.amount, 'auto_recharge.amount'),
          maxPerCycle: int(recharge.max_per_cycle ?? 3, 'auto_recharge.max_per_cycle'),
        }
      : null,
    forecastWarningDays: int(body.forecast_warning_days ?? 3, 'forecast_warning_days'),
    editable: body.editable === true,
  }
}

export function toSpendCap(raw: unknown): SpendCap | null {
  if (raw == null) return null
  const cap = obj(raw, 'spend_cap')
  return {
    amount: int(cap.amount, 'spend_cap.amount'),
    categories: cap.categories == null ? null : list(cap.categories, 'spend_cap.categories').map(String),
    warnPercent: int(cap.warn_percent, 'spend_cap.warn_percent'),
  }
}

export function toUsage(raw: unknown): Usage {
  const body = obj(raw, 'usage')
  return {
    currency: str(body.currency, 'currency'),
    days: list(body.days, 'days').map((item) => {
      const day = obj(item, 'day')
      return {
        date: str(day.date, 'date'),
        amount: int(day.amount, 'amount'),
        messages: int(day.messages, 'messages'),
        byWaba: list(day.by_waba ?? [], 'by_waba').map((entry) => {
          const waba = obj(entry, 'by_waba entry')
          return {
            wabaId: str(waba.waba_id, 'waba_id'),
            amount: int(waba.amount, 'amount'),
            messages: int(waba.messages, 'messages'),
          }
        }),
      }
    }),
  }
}

export function toLogRow(raw: unknown): LogRow {
  const row = obj(raw, 'log row')
  const mapped: LogRow = {
    deductionId: int(row.deduction_id, 'deduction_id'),
    createdAt: str(row.created_at, 'created_at'),
    uniqueCode: str(row.unique_code, 'unique_code'),
    broadcastId: optStr(row.broadcast_id),
    messageId: optStr(row.message_id),
    category: optStr(row.category),
    deductionCode: str(row.deduction_code, 'deduction_code'),
    quantity: int(row.quantity, 'quantity'),
    unitPrice: int(row.unit_price, 'unit_price'),
    amount: int(row.amount, 'amount'),
    creditedTo: optStr(row.credited_to),
    customerName: optStr(row.customer_name),
    phoneNumber: optStr(row.phone_number),
    refunded: row.refunded === true,
  }
  // The API sends the WABA fields only when the company shows them (SPEC: the `show_waba_id` preference).
  if ('waba_id' in row) {
    mapped.wabaId = optStr(row.waba_id)
    mapped.wabaName = optStr(row.waba_name)
  }
  return mapped
}

const DELIVERY_STATES: readonly DeliveryState[] = ['delivered', 'pending', 'failed', 'dead']

export function toBillingEvent(raw: unknown): BillingEvent {
  const event = obj(raw, 'event')
  const delivery = isRecord(event.delivery) ? event.delivery : {}
  const { state, attempts } = delivery
  return {
    id: String(event.id ?? ''),
    type: str(event.type, 'type'),
    createdAt: str(event.created_at, 'created_at'),
    data: isRecord(event.data) ? event.data : {},
    delivery: DELIVERY_STATES.includes(state as DeliveryState) ? (state as DeliveryState) : 'unknown',
    attempts: typeof attempts === 'number' && Number.isSafeInteger(attempts) ? attempts : null,
  }
}

/** `filename="…"` of a Content-Disposition header, or a fallback. */
export function attachmentName(header: string | null, fallback: string): string {
  const match = header?.match(/filename="([^"]+)"/)
  return match?.[1] ?? fallback
}

/** The query the logs and the CSV share: dates in the company zone become instants; `to` covers its whole day. */
export function logQuery(filters: LogFilters, timeZone: string): URLSearchParams {
  const query = new URLSearchParams()
  if (filters.wabaId) query.set('waba_id', filters.wabaId)
  if (filters.category) query.set('category', filters.category)
  if (filters.from) query.set('from', zonedMidnight(filters.from, timeZone))
  if (filters.to) query.set('to', zonedMidnight(addDays(filters.to, 1), timeZone))
  return query
}

export class ApiClient {
  private readonly baseUrl: string
  private readonly token: () => string | null
  private readonly transport: typeof fetch

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl ?? ''
    this.token = options.token
    this.transport = options.fetch ?? ((...args) => globalThis.fetch(...args))
  }

  private async send(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers)
    const token = this.token()
    if (token) headers.set('Authorization', `Bearer ${token}`)
    if (!headers.has('Accept')) headers.set('Accept', 'application/json')
    let response: Response
    try {
      response = await this.transport(`${this.baseUrl}${API_PREFIX}${path}`, { ...init, headers })
    } catch (error) {
      if (error instanceof DOMException && error.name === 'AbortError') throw new ApiError(0, 'aborted', 'cancelled')
      throw new ApiError(0, 'network', 'the network request failed')
    }
    if (!response.ok) throw await this.failure(response)
    return response
  }

  private async failure(response: Response): Promise<ApiError> {
    let body: unknown = null
    try {
      body = await response.json()
    } catch {
      // not JSON: a proxy's page or an empty body
    }
    const error = isRecord(body) && isRecord(body.error) ? body.error : null
    return new ApiError(
      response.status,
      typeof error?.code === 'string' ? error.code : `http_${response.status}`,
      typeof error?.message === 'string' ? error.message : `the server answered ${response.status}`,
      isRecord(error?.details) ? error.details : {},
    )
  }

  private async json(path: string, init?: RequestInit): Promise<unknown> {
    const response = await this.send(path, init)
    try {
      return await response.json()
    } catch {
      throw new ApiError(response.status, 'bad_response', 'the API sent something that is not JSON')
    }
  }

  async billingInfo(signal?: AbortSignal): Promise<BillingInfo> {
    return toBillingInfo(await this.json('/billings/info', { signal }))
  }

  async balanceAlerts(signal?: AbortSignal): Promise<AlertSettings> {
    return toAlertSettings(await this.json('/balance_alerts', { signal }))
  }

  /** Replace the alerts and the auto-recharge setting (owner and admin; 403 for others). */
  async saveBalanceAlerts(settings: Pick<AlertSettings, 'alerts' | 'autoRecharge'>): Promise<AlertSettings> {
    const recharge = settings.autoRecharge
    const body = {
      alerts: settings.alerts.map((alert) => ({ kind: alert.kind, value: alert.value })),
      auto_recharge: recharge
        ? { below: recharge.below, amount: recharge.amount, max_per_cycle: recharge.maxPerCycle }
        : null,
    }
    return toAlertSettings(
      await this.json('/balance_alerts', {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      }),
    )
  }

  async usage(signal?: AbortSignal): Promise<Usage> {
    return toUsage(await this.json('/usage', { signal }))
  }

  async logs(
    filters: LogFilters,
    options: { timeZone?: string; cursor?: string | null; limit?: number; signal?: AbortSignal } = {},
  ): Promise<LogPage> {
    const query = logQuery(filters, options.timeZone ?? DEFAULT_TIMEZONE)
    if (options.cursor) query.set('cursor', options.cursor)
    query.set('limit', String(options.limit ?? 50))
    const body = obj(await this.json(`/mcc_logs?${query}`, { signal: options.signal }), 'logs')
    const raw = list(body.data, 'data')
    return {
      rows: raw.map(toLogRow),
      nextCursor: optStr(body.next_cursor),
      showWabaId: raw.some((row) => isRecord(row) && 'waba_id' in row),
    }
  }

  async billingEvents(options: { cursor?: string | null; limit?: number; signal?: AbortSignal } = {}): Promise<EventPage> {
    const query = new URLSearchParams({ limit: String(options.limit ?? 10) })
    if (options.cursor) query.set('cursor', options.cursor)
    const body = obj(await this.json(`/billing_events?${query}`, { signal: options.signal }), 'events')
    return { events: list(body.data, 'data').map(toBillingEvent), nextCursor: optStr(body.next_cursor) }
  }

  /** The CSV of `filters`, read as it streams; `onProgress` hears the bytes received so far. */
  async downloadCsv(
    filters: LogFilters,
    options: { timeZone?: string; onProgress?: (bytes: number) => void; signal?: AbortSignal } = {},
  ): Promise<CsvFile> {
    const query = logQuery(filters, options.timeZone ?? DEFAULT_TIMEZONE)
    const response = await this.send(`/download_broadcast_deduction?${query}`, {
      signal: options.signal,
      headers: { Accept: 'text/csv' },
    })
    const filename = attachmentName(response.headers.get('Content-Disposition'), 'deductions.csv')
    const chunks: Uint8Array[] = []
    let bytes = 0
    if (response.body) {
      const reader = response.body.getReader()
      try {
        for (;;) {
          const { done, value } = await reader.read()
          if (done) break
          chunks.push(value)
          bytes += value.byteLength
          options.onProgress?.(bytes)
        }
      } catch {
        throw new ApiError(0, 'network', 'the download was interrupted')
      }
    } else {
      const buffer = new Uint8Array(await response.arrayBuffer())
      chunks.push(buffer)
      bytes = buffer.byteLength
      options.onProgress?.(bytes)
    }
    return { blob: new Blob(chunks as BlobPart[], { type: 'text/csv;charset=utf-8' }), filename, bytes }
  }

  /** Set, change or (with null) remove a WABA's spending cap (owners and admins); the cap as it now stands. */
  async putSpendCap(wabaId: string, cap: SpendCap | null): Promise<{ spendCap: SpendCap | null; capSpent: number | null }> {
    const wire = cap && { amount: cap.amount, categories: cap.categories, warn_percent: cap.warnPercent }
    const body = obj(
      await this.json(`/wabas/${encodeURIComponent(wabaId)}/spend_cap`, {
        method: 'PUT',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(wire),
      }),
      'spend cap',
    )
    return { spendCap: toSpendCap(body.spend_cap), capSpent: body.cap_spent == null ? null : int(body.cap_spent, 'cap_spent') }
  }

  async sendAnalytics<N extends AnalyticsEventName>(name: N, properties: AnalyticsProperties[N]): Promise<void> {
    await this.send('/analytics/events', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name, properties }),
      keepalive: true,
    })
  }
}
