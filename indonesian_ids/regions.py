"""Kemendagri region codes: all 38 provinces and a sample of real kab/kota in each.

Codes follow Kepmendagri 300.2.2-2138/2025 (Kemendagri numbering, which differs from BPS for
some regencies: Kemendagri 3171 is Jakarta Pusat, 3174 Jakarta Selatan).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Province:
    code: str  # 2 digits
    name: str
    # Rough population in millions (2020 census, Papua split by new province): used only to
    # spread synthetic people and facilities the way the real workforce is spread.
    weight: float


@dataclass(frozen=True, slots=True)
class Regency:
    code: str  # 4 digits: province code + 01..69 (kabupaten) or 71..99 (kota)
    name: str  # "Kabupaten X" / "Kota X" / "Kota Administrasi X"

    @property
    def province_code(self) -> str:
        return self.code[:2]

    @property
    def is_city(self) -> bool:
        return int(self.code[2:]) >= 71

    @property
    def short_name(self) -> str:
        """The name without "Kabupaten"/"Kota" (e.g. "Bandung")."""
        for prefix in ("Kabupaten Administrasi ", "Kota Administrasi ", "Kabupaten ", "Kota "):
            if self.name.startswith(prefix):
                return self.name[len(prefix) :]
        return self.name


def _provinces(*rows: tuple[str, str, float]) -> Mapping[str, Province]:
    return MappingProxyType({code: Province(code, name, weight) for code, name, weight in rows})


PROVINCES: Mapping[str, Province] = _provinces(
    ("11", "Aceh", 5.27),
    ("12", "Sumatera Utara", 14.80),
    ("13", "Sumatera Barat", 5.53),
    ("14", "Riau", 6.39),
    ("15", "Jambi", 3.55),
    ("16", "Sumatera Selatan", 8.47),
    ("17", "Bengkulu", 2.01),
    ("18", "Lampung", 9.01),
    ("19", "Kepulauan Bangka Belitung", 1.46),
    ("21", "Kepulauan Riau", 2.06),
    ("31", "DKI Jakarta", 10.56),
    ("32", "Jawa Barat", 48.27),
    ("33", "Jawa Tengah", 36.52),
    ("34", "DI Yogyakarta", 3.67),
    ("35", "Jawa Timur", 40.67),
    ("36", "Banten", 11.90),
    ("51", "Bali", 4.32),
    ("52", "Nusa Tenggara Barat", 5.32),
    ("53", "Nusa Tenggara Timur", 5.33),
    ("61", "Kalimantan Barat", 5.41),
    ("62", "Kalimantan Tengah", 2.67),
    ("63", "Kalimantan Selatan", 4.07),
    ("64", "Kalimantan Timur", 3.77),
    ("65", "Kalimantan Utara", 0.70),
    ("71", "Sulawesi Utara", 2.62),
    ("72", "Sulawesi Tengah", 2.99),
    ("73", "Sulawesi Selatan", 9.07),
    ("74", "Sulawesi Tenggara", 2.62),
    ("75", "Gorontalo", 1.17),
    ("76", "Sulawesi Barat", 1.42),
    ("81", "Maluku", 1.85),
    ("82", "Maluku Utara", 1.28),
    ("91", "Papua", 1.03),
    ("92", "Papua Barat", 0.56),
    ("93", "Papua Selatan", 0.52),
    ("94", "Papua Tengah", 1.32),
    ("95", "Papua Pegunungan", 1.45),
    ("96", "Papua Barat Daya", 0.60),
)

_REGENCY_ROWS: tuple[tuple[str, str], ...] = (
    ("1106", "Kabupaten Aceh Besar"),
    ("1107", "Kabupaten Pidie"),
    ("1108", "Kabupaten Aceh Utara"),
    ("1111", "Kabupaten Bireuen"),
    ("1171", "Kota Banda Aceh"),
    ("1173", "Kota Lhokseumawe"),
    ("1174", "Kota Langsa"),
    ("1205", "Kabupaten Langkat"),
    ("1207", "Kabupaten Deli Serdang"),
    ("1208", "Kabupaten Simalungun"),
    ("1209", "Kabupaten Asahan"),
    ("1271", "Kota Medan"),
    ("1272", "Kota Pematangsiantar"),
    ("1275", "Kota Binjai"),
    ("1305", "Kabupaten Padang Pariaman"),
    ("1306", "Kabupaten Agam"),
    ("1371", "Kota Padang"),
    ("1375", "Kota Bukittinggi"),
    ("1376", "Kota Payakumbuh"),
    ("1401", "Kabupaten Kampar"),
    ("1403", "Kabupaten Bengkalis"),
    ("1404", "Kabupaten Indragiri Hilir"),
    ("1471", "Kota Pekanbaru"),
    ("1472", "Kota Dumai"),
    ("1501", "Kabupaten Kerinci"),
    ("1502", "Kabupaten Merangin"),
    ("1505", "Kabupaten Muaro Jambi"),
    ("1571", "Kota Jambi"),
    ("1602", "Kabupaten Ogan Komering Ilir"),
    ("1603", "Kabupaten Muara Enim"),
    ("1607", "Kabupaten Banyuasin"),
    ("1671", "Kota Palembang"),
    ("1674", "Kota Prabumulih"),
    ("1702", "Kabupaten Rejang Lebong"),
    ("1703", "Kabupaten Bengkulu Utara"),
    ("1705", "Kabupaten Seluma"),
    ("1771", "Kota Bengkulu"),
    ("1801", "Kabupaten Lampung Selatan"),
    ("1802", "Kabupaten Lampung Tengah"),
    ("1807", "Kabupaten Lampung Timur"),
    ("1871", "Kota Bandar Lampung"),
    ("1872", "Kota Metro"),
    ("1901", "Kabupaten Bangka"),
    ("1902", "Kabupaten Belitung"),
    ("1904", "Kabupaten Bangka Tengah"),
    ("1971", "Kota Pangkal Pinang"),
    ("2101", "Kabupaten Bintan"),
    ("2102", "Kabupaten Karimun"),
    ("2171", "Kota Batam"),
    ("2172", "Kota Tanjung Pinang"),
    ("3101", "Kabupaten Administrasi Kepulauan Seribu"),
    ("3171", "Kota Administrasi Jakarta Pusat"),
    ("3172", "Kota Administrasi Jakarta Utara"),
    ("3173", "Kota Administrasi Jakarta Barat"),
    ("3174", "Kota Administrasi Jakarta Selatan"),
    ("3175", "Kota Administrasi Jakarta Timur"),
    ("3201", "Kabupaten Bogor"),
    ("3204", "Kabupaten Bandung"),
    ("3209", "Kabupaten Cirebon"),
    ("3215", "Kabupaten Karawang"),
    ("3216", "Kabupaten Bekasi"),
    ("3271", "Kota Bogor"),
    ("3273", "Kota Bandung"),
    ("3275", "Kota Bekasi"),
    ("3276", "Kota Depok"),
    ("3302", "Kabupaten Banyumas"),
    ("3310", "Kabupaten Klaten"),
    ("3318", "Kabupaten Pati"),
    ("3329", "Kabupaten Brebes"),
    ("3372", "Kota Surakarta"),
    ("3374", "Kota Semarang"),
    ("3401", "Kabupaten Kulon Progo"),
    ("3402", "Kabupaten Bantul"),
    ("3403", "Kabupaten Gunungkidul"),
    ("3404", "Kabupaten Sleman"),
    ("3471", "Kota Yogyakarta"),
    ("3507", "Kabupaten Malang"),
    ("3509", "Kabupaten Jember"),
    ("3510", "Kabupaten Banyuwangi"),
    ("3515", "Kabupaten Sidoarjo"),
    ("3525", "Kabupaten Gresik"),
    ("3573", "Kota Malang"),
    ("3578", "Kota Surabaya"),
    ("3601", "Kabupaten Pandeglang"),
    ("3603", "Kabupaten Tangerang"),
    ("3604", "Kabupaten Serang"),
    ("3671", "Kota Tangerang"),
    ("3673", "Kota Serang"),
    ("3674", "Kota Tangerang Selatan"),
    ("5102", "Kabupaten Tabanan"),
    ("5103", "Kabupaten Badung"),
    ("5104", "Kabupaten Gianyar"),
    ("5108", "Kabupaten Buleleng"),
    ("5171", "Kota Denpasar"),
    ("5201", "Kabupaten Lombok Barat"),
    ("5202", "Kabupaten Lombok Tengah"),
    ("5203", "Kabupaten Lombok Timur"),
    ("5204", "Kabupaten Sumbawa"),
    ("5271", "Kota Mataram"),
    ("5272", "Kota Bima"),
    ("5301", "Kabupaten Kupang"),
    ("5302", "Kabupaten Timor Tengah Selatan"),
    ("5307", "Kabupaten Sikka"),
    ("5310", "Kabupaten Manggarai"),
    ("5311", "Kabupaten Sumba Timur"),
    ("5371", "Kota Kupang"),
    ("6101", "Kabupaten Sambas"),
    ("6104", "Kabupaten Ketapang"),
    ("6112", "Kabupaten Kubu Raya"),
    ("6171", "Kota Pontianak"),
    ("6172", "Kota Singkawang"),
    ("6201", "Kabupaten Kotawaringin Barat"),
    ("6202", "Kabupaten Kotawaringin Timur"),
    ("6203", "Kabupaten Kapuas"),
    ("6271", "Kota Palangkaraya"),
    ("6301", "Kabupaten Tanah Laut"),
    ("6302", "Kabupaten Kotabaru"),
    ("6303", "Kabupaten Banjar"),
    ("6371", "Kota Banjarmasin"),
    ("6372", "Kota Banjarbaru"),
    ("6401", "Kabupaten Paser"),
    ("6402", "Kabupaten Kutai Kartanegara"),
    ("6403", "Kabupaten Berau"),
    ("6471", "Kota Balikpapan"),
    ("6472", "Kota Samarinda"),
    ("6474", "Kota Bontang"),
    ("6501", "Kabupaten Bulungan"),
    ("6502", "Kabupaten Malinau"),
    ("6503", "Kabupaten Nunukan"),
    ("6571", "Kota Tarakan"),
    ("7102", "Kabupaten Minahasa"),
    ("7105", "Kabupaten Minahasa Selatan"),
    ("7106", "Kabupaten Minahasa Utara"),
    ("7171", "Kota Manado"),
    ("7172", "Kota Bitung"),
    ("7201", "Kabupaten Banggai"),
    ("7202", "Kabupaten Poso"),
    ("7203", "Kabupaten Donggala"),
    ("7210", "Kabupaten Sigi"),
    ("7271", "Kota Palu"),
    ("7306", "Kabupaten Gowa"),
    ("7308", "Kabupaten Bone"),
    ("7309", "Kabupaten Maros"),
    ("7315", "Kabupaten Pinrang"),
    ("7371", "Kota Makassar"),
    ("7372", "Kota Parepare"),
    ("7373", "Kota Palopo"),
    ("7401", "Kabupaten Kolaka"),
    ("7402", "Kabupaten Konawe"),
    ("7403", "Kabupaten Muna"),
    ("7405", "Kabupaten Konawe Selatan"),
    ("7471", "Kota Kendari"),
    ("7472", "Kota Baubau"),
    ("7501", "Kabupaten Gorontalo"),
    ("7502", "Kabupaten Boalemo"),
    ("7503", "Kabupaten Bone Bolango"),
    ("7504", "Kabupaten Pohuwato"),
    ("7571", "Kota Gorontalo"),
    ("7601", "Kabupaten Pasangkayu"),
    ("7602", "Kabupaten Mamuju"),
    ("7604", "Kabupaten Polewali Mandar"),
    ("7605", "Kabupaten Majene"),
    ("8101", "Kabupaten Maluku Tengah"),
    ("8104", "Kabupaten Buru"),
    ("8106", "Kabupaten Seram Bagian Barat"),
    ("8171", "Kota Ambon"),
    ("8172", "Kota Tual"),
    ("8201", "Kabupaten Halmahera Barat"),
    ("8203", "Kabupaten Halmahera Utara"),
    ("8204", "Kabupaten Halmahera Selatan"),
    ("8271", "Kota Ternate"),
    ("8272", "Kota Tidore Kepulauan"),
    ("9103", "Kabupaten Jayapura"),
    ("9105", "Kabupaten Kepulauan Yapen"),
    ("9106", "Kabupaten Biak Numfor"),
    ("9111", "Kabupaten Keerom"),
    ("9171", "Kota Jayapura"),
    ("9202", "Kabupaten Manokwari"),
    ("9203", "Kabupaten Fakfak"),
    ("9206", "Kabupaten Teluk Bintuni"),
    ("9208", "Kabupaten Kaimana"),
    ("9301", "Kabupaten Merauke"),
    ("9302", "Kabupaten Boven Digoel"),
    ("9303", "Kabupaten Mappi"),
    ("9304", "Kabupaten Asmat"),
    ("9401", "Kabupaten Nabire"),
    ("9402", "Kabupaten Puncak Jaya"),
    ("9403", "Kabupaten Paniai"),
    ("9404", "Kabupaten Mimika"),
    ("9501", "Kabupaten Jayawijaya"),
    ("9502", "Kabupaten Pegunungan Bintang"),
    ("9503", "Kabupaten Yahukimo"),
    ("9504", "Kabupaten Tolikara"),
    ("9601", "Kabupaten Sorong"),
    ("9602", "Kabupaten Sorong Selatan"),
    ("9603", "Kabupaten Raja Ampat"),
    ("9671", "Kota Sorong"),
)

REGENCIES: Mapping[str, Regency] = MappingProxyType(
    {code: Regency(code, name) for code, name in _REGENCY_ROWS}
)


def regencies_of(province_code: str) -> tuple[Regency, ...]:
    """The sampled kab/kota of one province, in code order (empty for an unknown code)."""
    return tuple(r for r in REGENCIES.values() if r.province_code == province_code)


def province_name(code: str) -> str | None:
    province = PROVINCES.get(code)
    return province.name if province is not None else None
