import { mount } from '@vue/test-utils'
import { describe, expect, it } from 'vitest'
import Forecast from './Forecast.vue'

const plain = (text: string) => text.replace(/\u00a0/g, ' ')
const base = { resetsAt: '2026-12-18T17:00:00+00:00', currency: 'IDR', timeZone: 'Asia/Jakarta' }

describe('Forecast', () => {
  it('says when the money runs out and when the allowance resets, with the pace it is based on', () => {
    const forecast = { runsOutAt: '2026-12-14T03:00:00+00:00', dailySpend: 4_200_000, basisDays: 7 }
    const wrapper = mount(Forecast, { props: { ...base, forecast } })
    expect(wrapper.text()).toContain('At this pace the balance lasts until 14 Dec 2026; the allowance resets 19 Dec 2026.')
    expect(plain(wrapper.text())).toContain('Spending Rp 42.000 a day (mean of the last 7 days).')
    expect(wrapper.get('[data-testid="forecast"]').classes()).toContain('forecast-warning')
  })

  it('money that lasts the cycle says so, quietly', () => {
    const forecast = { runsOutAt: null, dailySpend: 100, basisDays: 1 }
    const wrapper = mount(Forecast, { props: { ...base, forecast } })
    expect(wrapper.text()).toContain('lasts until the allowance resets 19 Dec 2026')
    expect(wrapper.text()).toContain('(the last day)')
    expect(wrapper.get('[data-testid="forecast"]').classes()).not.toContain('forecast-warning')
  })

  it.each([null, { runsOutAt: null, dailySpend: 0, basisDays: 7 }, { runsOutAt: null, dailySpend: 0, basisDays: 0 }])(
    'no spend, no forecast (%o)',
    (forecast) => {
      const wrapper = mount(Forecast, { props: { ...base, forecast } })
      expect(wrapper.text()).toBe('No spend in the last days: no forecast yet.')
    },
  )
})
