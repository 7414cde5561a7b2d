/** Billing store: the balance (billings/info), the usage chart's data and the alert history, loaded side by side. */

import { defineStore } from 'pinia'
import { computed, ref, shallowRef } from 'vue'
import { ApiError } from '../api/client'
import { apiClient } from '../api/instance'
import type { BillingEvent, BillingInfo, SpendCap, Usage } from '../api/types'
import { setCurrencyExponent } from '../lib/format'
import { type MoreState, type SurfaceState, describeError } from '../lib/state'
import { DEFAULT_TIMEZONE } from '../lib/time'

export const EVENTS_PAGE = 10

type Status = 'idle' | 'loading' | 'ready' | 'error'

export const useBillingStore = defineStore('billing', () => {
  const info = shallowRef<BillingInfo | null>(null)
  const infoStatus = ref<Status>('idle')
  const infoError = ref<string | null>(null)
  const noPackage = ref(false)

  const usage = shallowRef<Usage | null>(null)
  const usageStatus = ref<Status>('idle')
  const usageError = ref<string | null>(null)

  const events = shallowRef<BillingEvent[]>([])
  const eventsCursor = ref<string | null>(null)
  const eventsStatus = ref<Status>('idle')
  const eventsError = ref<string | null>(null)
  const eventsMore = ref<MoreState>('idle')
  const eventsMoreError = ref<string | null>(null)

  async function loadInfo(): Promise<void> {
    infoStatus.value = 'loading'
    try {
      const loaded = await apiClient().billingInfo()
      if (loaded.currencyExponent !== null) setCurrencyExponent(loaded.currency, loaded.currencyExponent)
      info.value = loaded
      noPackage.value = false
      infoError.value = null
      infoStatus.value = 'ready'
    } catch (error) {
      // A company the API does not know has no package yet: an empty page, not a failure.
      noPackage.value = error instanceof ApiError && error.status === 404
      info.value = noPackage.value ? null : info.value
      infoError.value = describeError(error)
      infoStatus.value = noPackage.value ? 'ready' : 'error'
    }
  }

  async function loadUsage(): Promise<void> {
    usageStatus.value = 'loading'
    try {
      usage.value = await apiClient().usage()
      usageError.value = null
      usageStatus.value = 'ready'
    } catch (error) {
      usageError.value = describeError(error)
      usageStatus.value = 'error'
    }
  }

  async function loadEvents(): Promise<void> {
    eventsStatus.value = 'loading'
    eventsMore.value = 'idle'
    try {
      const page = await apiClient().billingEvents({ limit: EVENTS_PAGE })
      events.value = page.events
      eventsCursor.value = page.nextCursor
      eventsError.value = null
      eventsStatus.value = 'ready'
    } catch (error) {
      eventsError.value = describeError(error)
      eventsStatus.value = 'error'
    }
  }

  async function loadMoreEvents(): Promise<void> {
    if (!eventsCursor.value || eventsMore.value === 'loading') return
    eventsMore.value = 'loading'
    try {
      const page = await apiClient().billingEvents({ cursor: eventsCursor.value, limit: EVENTS_PAGE })
      events.value = [...events.value, ...page.events]
      eventsCursor.value = page.nextCursor
      eventsMore.value = 'idle'
    } catch (error) {
      eventsMoreError.value = describeError(error)
      eventsMore.value = 'error'
    }
  }

  /** Set or (null) remove a WABA's spending cap, then read the balance and the alerts again; rejects as the API. */
  async function setSpendCap(wabaId: string, cap: SpendCap | null): Promise<void> {
    await apiClient().putSpendCap(wabaId, cap)
    await Promise.allSettled([loadInfo(), loadEvents()])
  }

  /** Everything at once; one part failing leaves the others shown (the partial state). */
  async function loadAll(): Promise<void> {
    await Promise.allSettled([loadInfo(), loadUsage(), loadEvents()])
  }

  const infoState = computed<SurfaceState>(() => {
    if (infoStatus.value === 'idle' || (infoStatus.value === 'loading' && !info.value)) return 'loading'
    if (noPackage.value) return 'empty'
    if (infoStatus.value === 'error') return info.value ? 'partial' : 'error'
    const current = info.value
    if (!current) return 'loading'
    const { balance } = current
    if (!current.wabas.length && !balance.wabi.allowance && !balance.available && !balance.total) return 'empty'
    return current.stale ? 'partial' : 'success'
  })

  const usageState = computed<SurfaceState>(() => {
    if (usageStatus.value === 'idle' || (usageStatus.value === 'loading' && !usage.value)) return 'loading'
    if (usageStatus.value === 'error') return 'error'
    const days = usage.value?.days ?? []
    if (!days.some((day) => day.amount !== 0 || day.messages !== 0)) return 'empty'
    // The chart names WABAs from billings/info; without it the bars are labelled by id.
    return infoStatus.value === 'error' && !info.value ? 'partial' : 'success'
  })

  const eventsState = computed<SurfaceState>(() => {
    if (eventsStatus.value === 'idle' || (eventsStatus.value === 'loading' && !events.value.length)) return 'loading'
    if (eventsStatus.value === 'error') return 'error'
    if (!events.value.length) return 'empty'
    return eventsMore.value === 'error' ? 'partial' : 'success'
  })

  /** The page as a whole: partial when some of its parts failed and others loaded. */
  const overall = computed<SurfaceState>(() => {
    const states = [infoState.value, usageState.value, eventsState.value]
    if (states.includes('loading')) return 'loading'
    const failed = states.filter((state) => state === 'error').length
    if (failed === states.length) return 'error'
    if (failed || states.includes('partial')) return 'partial'
    return states.every((state) => state === 'empty') ? 'empty' : 'success'
  })

  const timeZone = computed(() => info.value?.timezone ?? DEFAULT_TIMEZONE)
  const currency = computed(() => info.value?.currency ?? usage.value?.currency ?? 'IDR')

  return {
    info,
    infoError,
    usage,
    usageError,
    events,
    eventsCursor,
    eventsError,
    eventsMore,
    eventsMoreError,
    infoState,
    usageState,
    eventsState,
    overall,
    timeZone,
    currency,
    loadInfo,
    loadUsage,
    loadEvents,
    loadMoreEvents,
    loadAll,
    setSpendCap,
  }
})
