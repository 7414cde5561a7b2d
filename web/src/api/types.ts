/** The page's view of the billing API, in camelCase. Amounts are integers in the currency's minor unit. */

export type BillingVersion = 'v2' | 'v3' | 'unknown'

export interface BalanceFigures {
  total: number
  available: number
  wabi: { allowance: number; remaining: number; resetsAt: string }
  additional: { remaining: number }
  postpaid: { limit: number; used: number }
}

/** A WABA's spending cap per cycle (rule 3.11): `categories` null covers every category. */
export interface SpendCap {
  amount: number
  categories: string[] | null
  warnPercent: number
}

export interface WabaSummary {
  wabaId: string
  name: string
  spentThisCycle: number
  /** The WABA's cap (null: none); undefined when the API leaves caps out (agents and members do not see them). */
  spendCap?: SpendCap | null
  /** What the WABA spent this cycle in the cap's categories; null without a cap. */
  capSpent?: number | null
  /** Mean daily spend of the forecast's basis days (0 when none). */
  dailySpend: number
  /** The WABA's own package (a v2 company), null when it spends from the shared pool. */
  balance: BalanceFigures | null
}

/** When the money runs out at the pace of the last (up to 7) completed days; `runsOutAt` null: it lasts the cycle. */
export interface Forecast {
  runsOutAt: string | null
  dailySpend: number
  basisDays: number
}

/** The open auto-recharge request: the top-up with its reference closes it. */
export interface TopUpRequest {
  paymentReference: string
  amount: number
  requestedAt: string
  expiresAt: string
  wabaId: string | null
}

export type AlertKind = 'percent' | 'amount'

export interface BalanceAlert {
  kind: AlertKind
  /** 1..100 for percent; minor units of prepaid money left for amount. */
  value: number
}

export interface AutoRecharge {
  below: number
  amount: number
  maxPerCycle: number
}

export interface AlertSettings {
  alerts: BalanceAlert[]
  autoRecharge: AutoRecharge | null
  forecastWarningDays: number
  /** Whether the signed-in role may change them (owner, admin); supervisors read them. */
  editable: boolean
}

export interface BillingInfo {
  billingVersion: BillingVersion
  currency: string
  /** ISO 4217 minor unit of `currency` as the API states it (optional in the API; lib/format.ts uses it). */
  currencyExponent: number | null
  /** IANA zone; from the API's optional `timezone`, else derived from the cycle start (see lib/time.ts). */
  timezone: string
  balance: BalanceFigures
  thresholdPercent: string
  /** The threshold's base: allowance + carried credit + top-ups this cycle (optional in the API). */
  fundedThisCycle: number | null
  lowBalance: boolean
  belowZero: boolean
  cycle: { startsAt: string; endsAt: string }
  wabas: WabaSummary[]
  asOf: string | null
  stale: boolean
  forecast: Forecast | null
  topUpRequest: TopUpRequest | null
}

export interface UsageByWaba {
  wabaId: string
  amount: number
  messages: number
}

export interface UsageDay {
  /** YYYY-MM-DD in the company timezone. */
  date: string
  amount: number
  messages: number
  byWaba: UsageByWaba[]
}

export interface Usage {
  currency: string
  days: UsageDay[]
}

export interface LogRow {
  deductionId: number
  createdAt: string
  uniqueCode: string
  /** Present only when the company preference `show_waba_id` is on (the API leaves it out otherwise). */
  wabaId?: string | null
  wabaName?: string | null
  broadcastId: string | null
  messageId: string | null
  category: string | null
  deductionCode: string
  quantity: number
  unitPrice: number
  amount: number
  creditedTo: string | null
  customerName: string | null
  phoneNumber: string | null
  refunded: boolean
}

export interface LogPage {
  rows: LogRow[]
  nextCursor: string | null
  /** Whether the API included the WABA columns (the company preference `show_waba_id`). */
  showWabaId: boolean
}

export interface LogFilters {
  wabaId: string | null
  category: string | null
  /** Dates (YYYY-MM-DD) in the company timezone; `to` is inclusive. */
  from: string | null
  to: string | null
}

export type DeliveryState = 'delivered' | 'pending' | 'failed' | 'dead' | 'unknown'

export interface BillingEvent {
  id: string
  type: string
  createdAt: string
  data: Record<string, unknown>
  delivery: DeliveryState
  attempts: number | null
}

export interface EventPage {
  events: BillingEvent[]
  nextCursor: string | null
}

export interface CsvFile {
  blob: Blob
  filename: string
  bytes: number
}

export type AnalyticsEventName = 'billing_shared_balance_tooltip_opened'
export type TooltipTrigger = 'hover' | 'focus' | 'click'
export interface AnalyticsProperties {
  billing_shared_balance_tooltip_opened: { billing_version: 'v2' | 'v3'; trigger: TooltipTrigger }
}
