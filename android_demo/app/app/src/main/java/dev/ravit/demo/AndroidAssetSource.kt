package dev.ravit.demo

import android.content.res.AssetManager
import dev.ravit.core.AssetSource
import java.io.FileNotFoundException
import java.io.IOException
import java.io.InputStream

/** The core's [AssetSource] over the APK's assets, under the folder [dir] (e.g. `ravit`). */
class AndroidAssetSource(private val assets: AssetManager, private val dir: String) : AssetSource {
    fun path(name: String): String = if (dir.isEmpty()) name else "$dir/$name"

    override fun exists(name: String): Boolean = try {
        assets.open(path(name)).close()
        true
    } catch (e: FileNotFoundException) {
        false
    } catch (e: IOException) {
        false
    }

    override fun open(name: String): InputStream = assets.open(path(name))

    override fun describe(name: String): String = "assets/${path(name)}"
}
