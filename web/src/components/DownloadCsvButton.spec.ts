import { flushPromises, mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import { ApiError } from '../api/client'
import type { CsvFile } from '../api/types'
import DownloadCsvButton from './DownloadCsvButton.vue'

function deferred() {
  let resolve!: (file: CsvFile) => void
  let reject!: (error: unknown) => void
  const promise = new Promise<CsvFile>((ok, fail) => {
    resolve = ok
    reject = fail
  })
  return { promise, resolve, reject }
}

describe('DownloadCsvButton', () => {
  it('idle: a button named "Download CSV"', () => {
    const wrapper = mount(DownloadCsvButton, { props: { download: () => deferred().promise } })
    expect(wrapper.get('button').text()).toBe('Download CSV')
    expect(wrapper.get('button').attributes('disabled')).toBeUndefined()
  })

  it('while streaming it is busy and disabled and counts the bytes; then it saves the file', async () => {
    const pending = deferred()
    let progress: (bytes: number) => void = () => undefined
    const saved: CsvFile[] = []
    const wrapper = mount(DownloadCsvButton, {
      props: {
        download: (onProgress) => {
          progress = onProgress
          return pending.promise
        },
        save: (file) => saved.push(file),
      },
    })
    await wrapper.get('button').trigger('click')
    expect(wrapper.get('button').attributes('disabled')).toBeDefined()
    expect(wrapper.get('button').attributes('aria-busy')).toBe('true')
    progress(2048)
    await wrapper.vm.$nextTick()
    expect(wrapper.get('.csv-status').text()).toBe('Downloading CSV… 2 KB')
    const file = { blob: new Blob(['a,b\n']), filename: 'deductions-all.csv', bytes: 4 }
    pending.resolve(file)
    await flushPromises()
    expect(saved).toEqual([file])
    expect(wrapper.emitted('downloaded')).toEqual([[{ filename: 'deductions-all.csv', bytes: 4 }]])
    expect(wrapper.get('.csv-status').text()).toBe('Downloaded deductions-all.csv (4 B).')
    expect(wrapper.get('button').attributes('disabled')).toBeUndefined()
  })

  it('a failure says what failed and the button offers to try again', async () => {
    const wrapper = mount(DownloadCsvButton, {
      props: { download: () => Promise.reject(new ApiError(503, 'unavailable', 'the database is not reachable')) },
    })
    await wrapper.get('button').trigger('click')
    await flushPromises()
    expect(wrapper.get('.csv-status').text()).toBe('The CSV download failed: the database is not reachable.')
    expect(wrapper.get('button').text()).toBe('Try again: Download CSV')
    expect(wrapper.emitted('failed')).toHaveLength(1)
  })

  it('a second click while streaming starts nothing', async () => {
    let calls = 0
    const wrapper = mount(DownloadCsvButton, {
      props: {
        download: () => {
          calls += 1
          return deferred().promise
        },
      },
    })
    await wrapper.get('button').trigger('click')
    await wrapper.get('button').trigger('click')
    expect(calls).toBe(1)
  })
})
