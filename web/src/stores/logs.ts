/** Logs store: the deduction logs under the current filters, page by page (keyset cursor). */

import { defineStore } from 'pinia'
import { computed, ref, shallowRef } from 'vue'
import { apiClient } from '../api/instance'
import type { CsvFile, LogFilters, LogRow } from '../api/types'
import { type MoreState, type SurfaceState, describeError } from '../lib/state'
import { useBillingStore } from './billing'

export const LOGS_PAGE = 50

export function noFilters(): LogFilters {
  return { wabaId: null, category: null, from: null, to: null }
}

export const useLogsStore = defineStore('logs', () => {
  const filters = ref<LogFilters>(noFilters())
  const rows = shallowRef<LogRow[]>([])
  const nextCursor = ref<string | null>(null)
  const showWabaId = ref(false)
  const status = ref<'idle' | 'loading' | 'ready' | 'error'>('idle')
  const error = ref<string | null>(null)
  const more = ref<MoreState>('idle')
  const moreError = ref<string | null>(null)
  // Only the answer to the latest request is shown: a slow answer to an older filter is dropped.
  let generation = 0
  let controller: AbortController | null = null

  function timeZone(): string {
    return useBillingStore().timeZone
  }

  async function load(): Promise<void> {
    const mine = ++generation
    controller?.abort()
    controller = new AbortController()
    status.value = 'loading'
    more.value = 'idle'
    try {
      const page = await apiClient().logs(filters.value, {
        timeZone: timeZone(),
        limit: LOGS_PAGE,
        signal: controller.signal,
      })
      if (mine !== generation) return
      rows.value = page.rows
      nextCursor.value = page.nextCursor
      showWabaId.value = page.showWabaId
      error.value = null
      status.value = 'ready'
    } catch (failure) {
      if (mine !== generation) return
      rows.value = []
      nextCursor.value = null
      error.value = describeError(failure)
      status.value = 'error'
    }
  }

  async function loadMore(): Promise<void> {
    if (!nextCursor.value || more.value === 'loading' || status.value !== 'ready') return
    const mine = generation
    more.value = 'loading'
    try {
      const page = await apiClient().logs(filters.value, {
        timeZone: timeZone(),
        cursor: nextCursor.value,
        limit: LOGS_PAGE,
        signal: controller?.signal,
      })
      if (mine !== generation) return
      rows.value = [...rows.value, ...page.rows]
      nextCursor.value = page.nextCursor
      showWabaId.value = showWabaId.value || page.showWabaId
      more.value = 'idle'
    } catch (failure) {
      if (mine !== generation) return
      moreError.value = describeError(failure)
      more.value = 'error'
    }
  }

  async function setFilters(next: LogFilters): Promise<void> {
    filters.value = { ...next }
    await load()
  }

  function downloadCsv(onProgress: (bytes: number) => void, signal: AbortSignal): Promise<CsvFile> {
    return apiClient().downloadCsv(filters.value, { timeZone: timeZone(), onProgress, signal })
  }

  const filtersActive = computed(() => Object.values(filters.value).some((value) => value !== null && value !== ''))

  const state = computed<SurfaceState>(() => {
    if (status.value === 'idle' || status.value === 'loading') return 'loading'
    if (status.value === 'error') return 'error'
    if (!rows.value.length) return 'empty'
    return more.value === 'error' ? 'partial' : 'success'
  })

  return {
    filters,
    rows,
    nextCursor,
    showWabaId,
    error,
    more,
    moreError,
    filtersActive,
    state,
    load,
    loadMore,
    setFilters,
    downloadCsv,
  }
})
