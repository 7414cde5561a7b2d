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
